"""A dataset directory is installed whole or not at all, and never over foreign files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dinrec.data.staging import prepare_out_dir, staged
from dinrec.errors import OutputExistsError


def _write(name: str, text: str) -> Callable[[Path], str]:
    def write(staging: Path) -> str:
        (staging / name).write_text(text)
        return f"wrote {name}"
    return write


def test_staged_installs_the_written_directory_and_returns_its_result(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out"
    assert staged(out, _write("train.parquet", "new")) == "wrote train.parquet"
    assert [p.name for p in out.iterdir()] == ["train.parquet"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no staging left beside


def test_a_failed_write_leaves_the_previous_directory_and_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.parquet").write_text("old")

    def broken(staging: Path) -> None:
        (staging / "train.parquet").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        staged(out, broken)
    assert (out / "train.parquet").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_prepare_out_dir_refuses_what_it_would_lose(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_out_dir(out, overwrite=False)  # absent: fine
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="already holds a dataset"):
        prepare_out_dir(out, overwrite=False)
    prepare_out_dir(out, overwrite=True)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds other files \(notes.txt\)"):
        prepare_out_dir(out, overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        prepare_out_dir(tmp_path / "file", overwrite=True)
