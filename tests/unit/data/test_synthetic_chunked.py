"""The chunked synthetic click-log build (data/synthetic_chunked.py): disjoint users of one
world, vocabularies as if fitted at once, and the same samples as building the chunks'
concatenated log in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinrec.data.build import build_dataset
from dinrec.data.dataset import load_dataset, write_dataset
from dinrec.data.events import EventLog
from dinrec.data.protocols import build_samples
from dinrec.data.synthetic import generate_log
from dinrec.data.vocabulary import Vocabularies

WORLD = {"n_items": 200, "n_categories": 8, "mean_impressions": 20}


def chunked(out: Path, n_users: int = 90, per_chunk: int = 40) -> Path:
    build_dataset("synthetic", None, "click-log", out, maxlen=6, seed=4, row_group_size=64,
                  reader_options={"n_users": n_users, "users_per_chunk": per_chunk, **WORLD})
    return out


def chunk_logs() -> list[EventLog]:
    return [generate_log(n_users=n, seed=4, user_seed=k, first_user=first, **WORLD)
            for k, (first, n) in enumerate(((0, 40), (40, 40), (80, 10)))]


def concatenated(logs: list[EventLog]) -> EventLog:
    return EventLog(
        user=np.concatenate([g.user for g in logs]), item=np.concatenate([g.item for g in logs]),
        category=np.concatenate([g.category for g in logs]),
        timestamp=np.concatenate([g.timestamp for g in logs]),
        label=np.concatenate([g.label for g in logs]),
        profile={k: np.concatenate([g.profile[k] for g in logs]) for k in logs[0].profile},
        source="synthetic")


def rows(path: Path) -> pa.Table:
    """A split without user_key (numbered per chunk), sorted by user and time."""
    table = pq.read_table(path).drop_columns(["user_key"])
    return table.sort_by([("user_id", "ascending"), ("timestamp", "ascending")])


def test_chunks_share_the_world_and_have_disjoint_users() -> None:
    a, b, _ = chunk_logs()
    assert set(a.user).isdisjoint(b.user)
    assert sorted(set(a.user))[:2] == ["u0", "u1"] and "u40" in set(b.user)
    # one world: the same item always has the same category
    both = {**dict(zip(a.item, a.category, strict=True)),
            **dict(zip(b.item, b.category, strict=True))}
    assert all(both[i] == c for i, c in zip(a.item, a.category, strict=True))


def test_a_chunked_build_equals_the_in_memory_build_of_its_chunks(tmp_path: Path) -> None:
    out = chunked(tmp_path / "chunked")
    samples = build_samples("click-log", concatenated(chunk_logs()), maxlen=6)
    vocabs = Vocabularies.fit(samples.fit_values)
    write_dataset(tmp_path / "memory", samples, vocabs, row_group_size=64)
    assert Vocabularies.load(out / "vocab.json") == vocabs
    ours, theirs = load_dataset(out).meta, load_dataset(tmp_path / "memory").meta
    assert ours.counts == theirs.counts and ours.vocabulary_sizes == theirs.vocabulary_sizes
    for split in ("train", "test"):
        assert rows(out / f"{split}.parquet").equals(rows(tmp_path / "memory" / f"{split}.parquet"))
        keys = pq.read_table(out / f"{split}.parquet", columns=["user_key", "user_id"])
        pairs = set(zip(keys["user_key"].to_pylist(), keys["user_id"].to_pylist(), strict=True))
        assert len({k for k, _ in pairs}) == len(pairs) == ours.counts[split]["users"]


def test_the_chunked_build_is_deterministic(tmp_path: Path) -> None:
    first, second = chunked(tmp_path / "a"), chunked(tmp_path / "b")
    for name in ("train.parquet", "test.parquet", "vocab.json", "dataset.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_chunking_is_for_the_click_log_protocol(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="users_per_chunk builds the click-log protocol"):
        build_dataset("synthetic", None, "rating", tmp_path / "x",
                      reader_options={"n_users": 10, "users_per_chunk": 5})
