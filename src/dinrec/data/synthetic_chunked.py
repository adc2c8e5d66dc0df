"""The synthetic click log built chunk by chunk of users: any size in bounded memory.

    build_dataset("synthetic", None, "click-log", "data/big",
                  reader_options={"n_users": 300_000, "users_per_chunk": 10_000})

The world (items, categories, popularity) comes from `seed` alone; chunk k draws its users
from the stream (seed, k) and names them from u{k * users_per_chunk}, so chunks are
disjoint users of one world, and a user's samples (history, per-user time split) depend on
that user's events only. Two passes over the chunks, each chunk regenerated from its seed
(generating is cheaper than storing it): the first counts the training ids the
vocabularies are fitted on, the second encodes each chunk's samples and appends them to
train.parquet / test.parquet. Memory: one chunk's log and samples plus one count per
distinct id; not the dataset.

A chunked log is not the unchunked log of the same seed (its users come from other
streams); it is drawn from the same distribution.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dinrec.data.dataset import (
    SPLITS,
    VOCAB_FILE,
    DatasetMeta,
    split_writer,
    write_meta,
    write_split_rows,
)
from dinrec.data.protocols import Samples, build_samples
from dinrec.data.protocols.history import user_codes
from dinrec.data.protocols.samples import CATE_ID, HIST_CATE_ID, HIST_ITEM_ID, ITEM_ID, USER_ID
from dinrec.data.synthetic import generate_log
from dinrec.data.vocabulary import Vocabularies, Vocabulary

USERS_PER_CHUNK = "users_per_chunk"  # the reader option that turns chunking on


def chunk_samples(
    n_users: int, users_per_chunk: int, seed: int, options: Mapping[str, Any],
    protocol_options: Mapping[str, Any],
) -> Iterator[tuple[int, Samples]]:
    """(events, click-log samples) of each chunk of users, in chunk order."""
    if n_users < 1 or users_per_chunk < 1:
        raise ValueError(f"n_users={n_users} and {USERS_PER_CHUNK}={users_per_chunk} must be "
                         ">= 1")
    for k, first in enumerate(range(0, n_users, users_per_chunk)):
        log = generate_log(n_users=min(users_per_chunk, n_users - first), seed=seed,
                           user_seed=k, first_user=first, **options)
        yield len(log), build_samples("click-log", log, **protocol_options)


class _IdCounts:
    """Training occurrences of each raw id per feature, summed over chunks."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        for name, raw in values.items():
            table = self.counts.setdefault(name, {})
            keys, counts = np.unique(np.asarray(raw).astype(str), return_counts=True)
            for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
                table[key] = table.get(key, 0) + count

    def vocabularies(self, min_count: int | Mapping[str, int]) -> Vocabularies:
        """As Vocabularies.fit on every chunk's values at once."""
        out = {}
        for name, table in self.counts.items():
            keys = np.array(sorted(table), dtype=str)  # codepoint order, as np.unique
            counts = np.array([table[k] for k in keys.tolist()], dtype=np.int64)
            least = min_count.get(name, 1) if isinstance(min_count, Mapping) else min_count
            out[name] = Vocabulary.from_counts(name, keys, counts, min_count=least)
        return Vocabularies(out)


def write_chunked(
    out: Path, *, n_users: int, users_per_chunk: int, seed: int,
    min_count: int | Mapping[str, int], options: Mapping[str, Any],
    protocol_options: Mapping[str, Any], row_group_size: int,
) -> tuple[DatasetMeta, int]:
    """Write the chunked synthetic click-log dataset into `out`; returns (meta, events)."""
    chunks = (n_users, users_per_chunk, seed, options, protocol_options)
    ids = _IdCounts()
    for _, samples in chunk_samples(*chunks):
        ids.add(samples.fit_values)
    vocabs = ids.vocabularies(min_count)
    profile = samples.profile_columns
    # User keys number users over both splits; n_users bounds them as the sizes bound ids.
    largest = max([n_users, *vocabs.sizes().values()])
    totals = {s: {"samples": 0, "positives": 0, "users": 0, "hist": 0} for s in SPLITS}
    items: dict[str, set[str]] = {s: set() for s in SPLITS}
    events, first_key = 0, 0
    writers = {s: split_writer(out / f"{s}.parquet", profile, largest) for s in SPLITS}
    try:
        for n_events, samples in chunk_samples(*chunks):
            events += n_events
            history = {HIST_ITEM_ID: vocabs.encode(ITEM_ID, samples.history.item),
                       HIST_CATE_ID: vocabs.encode(CATE_ID, samples.history.category)}
            parts = (samples.train, samples.test)
            keys = user_codes(*(p.user for p in parts))
            for split, part, key in zip(SPLITS, parts, keys, strict=True):
                write_split_rows(writers[split], part, key + first_key, history, vocabs,
                                 profile, samples.maxlen, row_group_size)
                t = totals[split]
                t["samples"] += len(part)
                t["positives"] += int(np.sum(part.label == 1))
                t["users"] += len(np.unique(part.user))
                t["hist"] += int(part.hist_len.sum())
                items[split].update(np.unique(part.item).astype(str).tolist())
            first_key += int(max(k.max(initial=-1) for k in keys)) + 1  # the chunk's users
    finally:
        for writer in writers.values():
            writer.close()
    vocabs.save(out / VOCAB_FILE)
    counts = {s: {"samples": t["samples"], "positives": t["positives"], "users": t["users"],
                  "items": len(items[s]),
                  "mean_hist_len": round(t["hist"] / t["samples"], 6) if t["samples"] else 0.0}
              for s, t in totals.items()}
    meta = DatasetMeta(
        protocol=samples.protocol, options=dict(samples.options), maxlen=samples.maxlen,
        vocabulary_sizes={f: vocabs[f].size for f in (USER_ID, ITEM_ID, CATE_ID, *profile)},
        profile_columns=list(profile), counts=counts, source=samples.source,
        row_group_size=row_group_size)
    write_meta(out, meta)
    return meta, events
