"""docs/architecture.md's layer table says what tests/unit/test_architecture.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_architecture import FORBIDDEN, LAYERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def doc_layers(text: str) -> list[tuple[str, tuple[str, ...], set[str]]]:
    """(layer, module prefixes, layers it may not import) of each row of the table under
    '## Layers', in order."""
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue  # prose, the header or the |---| line
        rows.append((cells[0].strip("`"), tuple(re.findall(r"`([^`]+)`", cells[1])),
                     set(re.findall(r"`([^`]+)`", cells[2]))))
    return rows


def test_the_doc_lists_the_tests_layers_in_order_with_their_modules() -> None:
    rows = doc_layers(DOC.read_text(encoding="utf-8"))
    assert [(name, modules) for name, modules, _ in rows] == LAYERS


def test_the_doc_says_what_each_side_layer_may_not_import() -> None:
    rows = doc_layers(DOC.read_text(encoding="utf-8"))
    assert {name: banned for name, _, banned in rows if banned} == FORBIDDEN


def test_a_table_that_drifts_is_seen() -> None:
    text = ("\n## Layers\n\n| layer | modules | may not import | holds |\n|---|---|---|---|\n"
            "| `base` | `dinrec.metrics` | | metrics |\n"
            "| `data` | `dinrec.data` | `serving` | readers |\n\n## Next\n| `x` | `y` | | |\n")
    assert doc_layers(text) == [("base", ("dinrec.metrics",), set()),
                                ("data", ("dinrec.data",), {"serving"})]
    assert doc_layers(text)[:1] != LAYERS[:1]  # base holds more modules in the test
