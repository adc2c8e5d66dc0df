"""Errors whose remedy is worded differently for the Python API and for the `dinrec` CLI.

A library function says "pass overwrite=True"; the command that called it should say
"pass --overwrite". The message is kept as a template with the remedies left open, so each
caller words it in its own terms instead of both at once ("overwrite=True (--overwrite)").

Example:
    >>> err = OutputExistsError("out/ holds a dataset; pass {overwrite} to replace it")
    >>> str(err)
    'out/ holds a dataset; pass overwrite=True to replace it'
    >>> err.for_cli()
    'out/ holds a dataset; pass --overwrite to replace it'
"""

from __future__ import annotations

OVERWRITE = ("overwrite=True", "--overwrite")


class OutputExistsError(ValueError):
    """An output directory already holds something the call would replace.

    Args:
        template: the message, with "{name}" where each remedy goes.
        remedies: {name: (API wording, CLI wording)}; "overwrite" is always known.
    """

    def __init__(self, template: str, **remedies: tuple[str, str]) -> None:
        self.template = template
        self.remedies = {"overwrite": OVERWRITE, **remedies}
        super().__init__(self._fill(0))

    def _fill(self, which: int) -> str:
        # str.replace, not format: a path in the message may hold braces of its own.
        text = self.template
        for name, words in self.remedies.items():
            text = text.replace("{" + name + "}", words[which])
        return text

    def for_cli(self) -> str:
        """The message with the command-line flags as the remedies."""
        return self._fill(1)
