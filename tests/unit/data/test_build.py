"""build_dataset: a tiny hand-written log file -> a dataset directory with exact counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dinrec.data import build as build_module
from dinrec.data.build import BuildSummary, build_dataset
from dinrec.data.dataset import load_dataset
from dinrec.data.readers import MalformedRowError

# MovieLens-100K's u.data layout: user, item, rating, timestamp (tab-separated).
# user 1: 5 ratings, user 2: 3, user 3: 1. With the default split (each user's last 20%)
# train keeps floor(5 * 0.8) = 4, floor(3 * 0.8) = 2 and floor(1 * 0.8) = 0 samples.
U_DATA = """\
1\t10\t5\t100
1\t11\t4\t101
1\t12\t3\t102
1\t13\t2\t103
1\t14\t5\t104
2\t10\t1\t200
2\t12\t5\t201
2\t15\t4\t202
3\t11\t4\t300
"""


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-tiny"
    folder.mkdir()
    (folder / "u.data").write_text(U_DATA)
    return folder


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_rating_build_from_log_file_has_exact_counts(log_dir: Path, tmp_path: Path) -> None:
    summary = build_dataset("movielens", log_dir, "rating", tmp_path / "out", maxlen=3)
    assert summary.samples == {"train": 6, "test": 3}
    # Labels (rating >= 4): user 1: 1 1 0 0 | 1, user 2: 0 1 | 1, user 3: | 1.
    assert summary.positives == {"train": 3, "test": 3}
    assert summary.positive_rate == pytest.approx(6 / 9)
    assert (summary.users, summary.items, summary.events) == (3, 6, 9)
    # History = strictly earlier events capped at maxlen 3: 0 1 2 3 3, 0 1 2, 0.
    assert summary.mean_hist_len == pytest.approx(12 / 9)
    assert summary.skipped_rows == 0 and summary.seconds > 0
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["protocol"] == "rating" and meta["maxlen"] == 3
    assert {s: c["samples"] for s, c in meta["counts"].items()} == {"train": 6, "test": 3}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dataset.json", "test.parquet", "train.parquet", "vocab.json"]


def test_summary_format_lists_samples_rate_users_and_history(log_dir, tmp_path) -> None:
    text = build_dataset("movielens", log_dir, "rating", tmp_path / "out").format()
    assert "samples:             9 (train 6, test 3)" in text
    assert "positive rate:       0.6667" in text
    assert "users:               3" in text
    assert "mean history length: 1.44 (maxlen 50)" in text


def test_split_and_protocol_options_reach_the_protocol(log_dir, tmp_path) -> None:
    summary = build_dataset("movielens", log_dir, "rating", tmp_path / "out",
                            split={"cutoff": 202}, protocol_options={"threshold": 5.0})
    assert summary.samples == {"train": 7, "test": 2}  # timestamps 202 and 300 are test
    assert summary.positive_rate == pytest.approx(3 / 9)  # only the 5s
    options = load_dataset(tmp_path / "out").meta.options
    assert options["threshold"] == 5.0 and options["split"]["cutoff"] == 202


def test_malformed_row_is_skipped_and_counted_or_raises(log_dir, tmp_path) -> None:
    (log_dir / "u.data").write_text(U_DATA + "4\t16\tfive\t400\n")
    with pytest.raises(MalformedRowError, match="line 10"):
        build_dataset("movielens", log_dir, "rating", tmp_path / "a")
    summary = build_dataset("movielens", log_dir, "rating", tmp_path / "b", on_error="skip")
    assert summary.skipped_rows == 1 and summary.events == 9
    assert not (tmp_path / "a").exists()


def test_synthetic_source_builds_a_click_log_dataset(tmp_path) -> None:
    summary = build_dataset("synthetic", None, "click-log", tmp_path / "syn", maxlen=10,
                            reader_options={"n_users": 30, "n_items": 150, "n_categories": 5})
    assert summary.users == 30 and summary.total_samples == summary.events > 0
    assert 0.0 < summary.positive_rate < 1.0
    assert load_dataset(tmp_path / "syn").meta.source == "synthetic"


@pytest.mark.parametrize("source,protocol", [("movielens", "rating"),
                                             ("synthetic", "next-item")])
def test_same_input_and_seed_give_byte_identical_files(log_dir, tmp_path, source,
                                                       protocol) -> None:
    options = {"n_users": 20, "n_items": 150, "n_categories": 5} if source == "synthetic" else {}
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        build_dataset(source, log_dir, protocol, out, seed=7, reader_options=options)
    assert _files(outs[0]) == _files(outs[1])


def test_synthetic_seed_changes_the_data(tmp_path) -> None:
    options = {"n_users": 20, "n_items": 150, "n_categories": 5}
    for seed in (1, 2):
        build_dataset("synthetic", None, "click-log", tmp_path / f"s{seed}", seed=seed,
                      reader_options=options)
    assert _files(tmp_path / "s1") != _files(tmp_path / "s2")


@pytest.mark.parametrize("kwargs,message", [
    ({"source": "movielns"}, "unknown log source 'movielns'"),
    ({"protocol": "ratings"}, "unknown protocol 'ratings'"),
    ({"reader_options": {"layot": "100k"}}, "reader 'movielens' has no option 'layot'"),
    ({"protocol_options": {"treshold": 3}}, "protocol 'rating' has no option 'treshold'"),
    ({"protocol_options": {"maxlen": 3}}, "protocol option 'maxlen' is set by"),
    ({"reader_options": {"on_error": "skip"}}, "reader option 'on_error' is set by"),
    ({"protocol": "next-item", "split": {"test_fraction": 0.5}}, "'next-item' has a fixed"),
    ({"split": {"test_fracton": 0.5}}, "unknown TimeSplit keys"),
    ({"path": "no/such/dir"}, "log path no/such/dir does not exist"),
    ({"behaviors_path": "x.csv"}, "behaviors_path is for the click-log protocol"),
])
def test_bad_names_raise_naming_them(log_dir, tmp_path, kwargs, message) -> None:
    args = {"source": "movielens", "path": log_dir, "protocol": "rating",
            "out_dir": tmp_path / "out", **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_dataset(**args)
    assert not (tmp_path / "out").exists()


def test_synthetic_option_names_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="synthetic generator has no option 'n_user'"):
        build_dataset("synthetic", None, "click-log", tmp_path / "o",
                      reader_options={"n_user": 3})


def test_existing_dataset_needs_overwrite_and_is_replaced(log_dir, tmp_path) -> None:
    out = tmp_path / "out"
    build_dataset("movielens", log_dir, "rating", out, maxlen=2)
    with pytest.raises(ValueError, match="already holds a dataset"):
        build_dataset("movielens", log_dir, "rating", out, maxlen=4)
    build_dataset("movielens", log_dir, "rating", out, maxlen=4, overwrite=True)
    assert load_dataset(out).meta.maxlen == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_directory_with_other_files_is_never_replaced(log_dir, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds other files \(notes.txt\)"):
        build_dataset("movielens", log_dir, "rating", out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_failed_write_leaves_the_previous_dataset_whole(log_dir, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    build_dataset("movielens", log_dir, "rating", out, maxlen=2)
    before = _files(out)

    def broken(out_dir, *args, **kwargs):
        (Path(out_dir) / "train.parquet").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "write_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        build_dataset("movielens", log_dir, "rating", out, maxlen=4, overwrite=True)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-tiny", "out"]


def test_summary_to_dict_is_json_ready(log_dir, tmp_path) -> None:
    summary = build_dataset("movielens", log_dir, "rating", tmp_path / "out")
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["samples"] == {"train": 6, "test": 3}
    assert data["positive_rate"] == pytest.approx(6 / 9)
    assert isinstance(summary, BuildSummary)
