"""Vectorised reading of delimited text logs (CSV, TSV, "::"-separated) into text columns.

pyarrow.csv does the parsing. It does not know line numbers once it parses in parallel, so
when something is wrong a second, row-by-row pass over the file (only then) maps rows back to
their 1-based lines for the error message.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from dinrec.data.readers.problems import MalformedRowError, ProblemLog, RowProblem

# Multi-character delimiters ("::" in MovieLens-1M) are rewritten to this control character,
# which pyarrow can split on and which never occurs in the logs themselves.
_SUBSTITUTE = "\x1f"


@dataclass(frozen=True)
class TextLayout:
    """How a delimited file is laid out.

    Args:
        delimiter: field separator; may be several characters (e.g. "::").
        names: the field names when the file has no header line (() for side files read
            row by row, whose fields are addressed by position); None: line 1 is a header.
        encoding: text encoding (MovieLens-100K/1M are latin-1).
        quoting: whether '"' quotes fields (CSV) or is an ordinary character (TSV, .dat).
    """

    delimiter: str
    names: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    quoting: bool = False


def open_binary(path: Path) -> IO[bytes]:
    """A file opened for reading bytes, gunzipped when its name ends in .gz."""
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _open_text(path: Path, layout: TextLayout) -> IO[str]:
    # Only used to count lines, so undecodable bytes (reported by pyarrow) may be replaced.
    raw = open_binary(path)
    if len(layout.delimiter) > 1:
        with raw:
            text = raw.read().decode(layout.encoding, errors="replace")
        return io.StringIO(text.replace(layout.delimiter, _SUBSTITUTE), newline="")
    return io.TextIOWrapper(raw, encoding=layout.encoding, errors="replace", newline="")


def _records(path: Path, layout: TextLayout) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of every non-empty record, as pyarrow splits them."""
    delimiter = _SUBSTITUTE if len(layout.delimiter) > 1 else layout.delimiter
    with _open_text(path, layout) as handle:
        if layout.quoting:
            reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
        else:
            reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        start = 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if fields:
                yield line, fields


def iter_fields(
    path: Path, layout: TextLayout, n_fields: int, log: ProblemLog
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each record of a small side file, parsed row by row.

    Used for the item and user files (thousands of lines), where per-line Python is cheap
    and gives exact line numbers; records with the wrong number of fields go to `log`.
    """
    for line, fields in _records(path, layout):
        if layout.names is None and line == 1:
            continue
        if len(fields) != n_fields:
            log.report(RowProblem(str(path), line, None,
                                  f"expected {n_fields} fields, found {len(fields)}"))
            continue
        yield line, fields


def read_header(path: Path, layout: TextLayout) -> tuple[str, ...]:
    """The field names on line 1 of a delimited file."""
    with open_binary(path) as handle:
        first = handle.readline()
    try:
        text = first.decode(layout.encoding).rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise MalformedRowError(
            RowProblem(str(path), 1, None, f"not valid {layout.encoding} text")) from err
    if not text.strip():
        raise ValueError(f"{path}: line 1 should be a header, but it is empty")
    if len(layout.delimiter) > 1:
        fields = text.split(layout.delimiter)
    elif layout.quoting:
        fields = next(csv.reader([text], delimiter=layout.delimiter))
    else:
        fields = next(csv.reader([text], delimiter=layout.delimiter, quoting=csv.QUOTE_NONE))
    # A UTF-8 byte-order mark would otherwise become part of the first column's name.
    return tuple(name.lstrip("\ufeff").strip() for name in fields)


def _undecodable_line(path: Path, encoding: str) -> int | None:
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None


@dataclass
class TextTable:
    """The text columns of a delimited file, and where its rows came from.

    Args:
        path: the file.
        layout: how it was split.
        names: all field names (from the header or the layout).
        columns: the requested fields as Arrow string arrays [N]; blanks are "".
        rejected: texts of records with the wrong number of fields (they are not in columns).
        num_rows: rows parsed (records with the wrong number of fields are not counted).
    """

    path: Path
    layout: TextLayout
    names: tuple[str, ...]
    columns: dict[str, pa.Array]
    rejected: list[str]
    num_rows: int
    unit: str = "line"
    _lines: np.ndarray | None = field(default=None, repr=False)
    _rejected_lines: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _scanned: bool = field(default=False, repr=False)

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        has_header = self.layout.names is None
        good: list[int] = []
        for line, fields in _records(self.path, self.layout):
            if has_header and line == 1:
                continue
            if len(fields) == len(self.names):
                good.append(line)
            else:
                self._rejected_lines.append((line, len(fields)))
        # Trust the mapping only when both parsers agree on what the records are.
        if len(good) == self.num_rows:
            self._lines = np.asarray(good, dtype=np.int64)

    def locate(self, rows: np.ndarray) -> list[int | None]:
        """1-based line numbers of the given row indices (None where they cannot be told)."""
        self._scan()
        if self._lines is None:
            return [None] * len(rows)
        return [int(x) for x in self._lines[rows]]

    def rejected_problems(self) -> list[RowProblem]:
        """One problem per record that had the wrong number of fields."""
        if not self.rejected:
            return []
        self._scan()
        expected = len(self.names)
        if len(self._rejected_lines) == len(self.rejected):
            return [
                RowProblem(str(self.path), line, None, f"expected {expected} fields, found {n}")
                for line, n in self._rejected_lines
            ]
        return [
            RowProblem(str(self.path), None, None, f"expected {expected} fields in {text!r}")
            for text in self.rejected
        ]


def read_delimited(
    path: str | Path, layout: TextLayout, columns: Sequence[str] | None = None
) -> TextTable:
    """Read a delimited text file into string columns, vectorised.

    Args:
        path: the file (.gz is decompressed).
        layout: delimiter, header or field names, encoding, quoting.
        columns: the fields to keep (default all); a name not in the file raises, naming the
            file and the column.

    Records with the wrong number of fields are left out of the columns and listed in
    `TextTable.rejected`; empty lines are ignored. Text that is not valid in the encoding
    raises MalformedRowError naming its line.
    """
    path = Path(path)
    names = layout.names if layout.names is not None else read_header(path, layout)
    wanted = tuple(names) if columns is None else tuple(columns)
    if not wanted:
        raise ValueError(f"{path}: no columns requested")
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(
            f"{path}: no column {missing[0]!r} in the file (its columns: {', '.join(names)})"
        )
    rejected: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        rejected.append(row.text)
        return "skip"

    single = layout.delimiter if len(layout.delimiter) == 1 else _SUBSTITUTE
    read_options = pa_csv.ReadOptions(
        column_names=list(names), skip_rows=0 if layout.names is not None else 1,
        encoding=layout.encoding,
    )
    # Quoted values may hold newlines; pyarrow must know, or a block boundary inside one
    # would split the record.
    parse_options = pa_csv.ParseOptions(
        delimiter=single, quote_char='"' if layout.quoting else False,
        newlines_in_values=layout.quoting, invalid_row_handler=on_invalid,
    )
    convert_options = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in wanted}, include_columns=list(wanted),
        strings_can_be_null=False, quoted_strings_can_be_null=False,
    )
    try:
        if len(layout.delimiter) > 1:
            with open_binary(path) as raw:
                data = raw.read().replace(layout.delimiter.encode(layout.encoding),
                                          _SUBSTITUTE.encode(layout.encoding))
            table = pa_csv.read_csv(pa.BufferReader(data), read_options, parse_options,
                                    convert_options)
        else:
            table = pa_csv.read_csv(str(path), read_options, parse_options, convert_options)
    except pa.ArrowInvalid as err:
        line = _undecodable_line(path, layout.encoding)
        if line is not None:
            raise MalformedRowError(
                RowProblem(str(path), line, None, f"not valid {layout.encoding} text")
            ) from err
        raise ValueError(f"{path}: cannot be parsed as delimited text: {err}") from err
    arrays = {c: table.column(c).combine_chunks() for c in wanted}
    return TextTable(path=path, layout=layout, names=tuple(names), columns=arrays,
                     rejected=rejected, num_rows=table.num_rows)
