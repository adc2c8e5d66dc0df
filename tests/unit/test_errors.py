"""OutputExistsError words its remedy for the API or the CLI, never both at once."""

from __future__ import annotations

from dinrec.errors import OutputExistsError


def test_api_and_cli_wordings_and_a_path_with_braces() -> None:
    err = OutputExistsError("/tmp/{x}/d holds a dataset; pass {overwrite} or {other}",
                            other=("resume=True", "--resume"))
    assert str(err) == "/tmp/{x}/d holds a dataset; pass overwrite=True or resume=True"
    assert err.for_cli() == "/tmp/{x}/d holds a dataset; pass --overwrite or --resume"
    assert isinstance(err, ValueError)  # callers catching ValueError still catch it
