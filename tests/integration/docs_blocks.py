"""The fenced bash blocks of the README and docs, with the marker that says how to test them.

Every ```bash block must be preceded, on the line just above its fence, by one of

    <!-- docs-test: run -->                  run as written (after any replacements)
    <!-- docs-test: server -->               its `dinrec serve` line starts a server in the
                                             background; the lines after it run against it
    <!-- docs-test: skip (why) -->           not run: placeholders, installs, benchmarks

`run` and `server` take replacements, each `; replace "OLD" with "NEW"`, for what a test
must shrink (a tiny demo instead of the default one). The marker is an HTML comment, so a
reader of the rendered page sees the commands exactly as they run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```bash\s*$")
_MARKER = re.compile(r"^<!-- docs-test: (run|server|skip)(.*?)\s*-->$")
_REPLACE = re.compile(r'^replace "(.*)" with "(.*)"$')
KINDS = ("run", "server", "skip")


@dataclass(frozen=True)
class Block:
    """One ```bash block: where it is, how to test it and its text (replacements applied)."""

    path: Path
    line: int
    kind: str
    text: str
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def parse_marker(rest: str, where: str) -> list[tuple[str, str]]:
    """The replacements of a marker's tail ('; replace "A" with "B"; ...')."""
    out = []
    for part in filter(None, (p.strip() for p in rest.split(";"))):
        match = _REPLACE.match(part)
        if match is None:
            raise ValueError(f"{where}: docs-test marker part {part!r} is not "
                             '`replace "OLD" with "NEW"`')
        out.append((match.group(1), match.group(2)))
    return out


def bash_blocks(path: Path) -> list[Block]:
    """Every ```bash block of a markdown file; a block without a marker raises naming it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if not _FENCE.match(lines[i]):
            i += 1
            continue
        where = f"{path.name}:{i + 1}"
        marker = _MARKER.match(lines[i - 1].strip()) if i else None
        if marker is None:
            raise ValueError(f"{where}: a ```bash block needs a docs-test marker on the line "
                             "above (run, server or skip (why))")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{where}: the ```bash block is never closed")
        kind = marker.group(1)
        replacements = [] if kind == "skip" else parse_marker(marker.group(2), where)
        text = "\n".join(lines[i + 1:end]) + "\n"
        for old, new in replacements:
            if old not in text:
                raise ValueError(f"{where}: replace {old!r}: not in the block")
            text = text.replace(old, new)
        blocks.append(Block(path, i + 1, kind, text, replacements))
        i = end + 1
    return blocks


def commands(text: str) -> list[str]:
    """A block's commands: continuation lines joined, comment and blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out
