"""Fill a behavior store from a dataset directory (see dinrec.data.dataset).

For each user, the dataset row with the latest timestamp (the test split wins a tie) gives
the stored state: its history (hist_item_id / hist_cate_id, up to hist_len) and its profile
columns. Ids are decoded back to RAW ids through the dataset's vocab.json, so the store is
keyed like live traffic. Every (item, category) pair seen as a candidate or in a history
fills the item -> category map.

What the dataset cannot give back is skipped, and counted in the report: users unseen in
training (their user_id is the unknown id, so the raw id is lost) and unknown profile values
(absent from the store, the server uses the unknown id for them anyway). A history entry that
was unknown at training time is stored as "<unk>", which the server maps back to the unknown
id: the model sees the same inputs it was evaluated on.

Stored history events carry the sample's timestamp minus one second (a history is strictly
earlier than its sample); their order is kept by arrival.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dinrec.data.dataset import load_dataset
from dinrec.data.protocols.samples import (
    CATE_ID,
    HIST_CATE_ID,
    HIST_ITEM_ID,
    HIST_LEN,
    ITEM_ID,
    TIMESTAMP,
    USER_ID,
    USER_KEY,
)
from dinrec.data.vocabulary import FIRST_ID, Vocabulary
from dinrec.serving.stores.base import BehaviorStore

USERS_PER_WRITE = 5000


@dataclass(frozen=True)
class LoadReport:
    """What `load_dataset_into_store` wrote and skipped."""

    users: int
    behaviors: int
    items: int
    skipped_unknown_users: int
    skipped_profile_values: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _decodable(vocab: Vocabulary, name: str) -> Vocabulary:
    if vocab.is_hashed:
        raise ValueError(
            f"{name} is hashed into buckets in this dataset; raw ids cannot be recovered, so "
            "the store cannot be filled from it"
        )
    return vocab


def _latest_rows(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Index of each user's last row by (timestamp, position)."""
    position = np.arange(len(user))
    order = np.lexsort((position, timestamp, user))  # by user, then time, then position
    last = np.ones(len(order), dtype=bool)
    last[:-1] = user[order][1:] != user[order][:-1]
    return order[last]


def load_dataset_into_store(
    dataset: str | os.PathLike[str],
    store: BehaviorStore,
    *,
    splits: Sequence[str] = ("train", "test"),
) -> LoadReport:
    """Write each user's latest history and profile, and the item categories, to `store`.

    Args:
        dataset: a dataset directory written by dinrec.data.dataset.write_dataset.
        store: the store to fill (users present in the dataset are replaced).
        splits: which splits to read.
    """
    ds = load_dataset(dataset)
    vocabs = ds.vocabularies()
    profile_cols = list(ds.meta.profile_columns)
    columns = [USER_ID, *profile_cols, ITEM_ID, CATE_ID, HIST_ITEM_ID, HIST_CATE_ID, HIST_LEN,
               TIMESTAMP]
    tables = []
    for split in splits:
        table = ds.read(split)
        keep = [c for c in (*columns, USER_KEY) if c in table.column_names]
        tables.append(table.select(keep))
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        return LoadReport(0, 0, 0, 0, 0)
    user_ids = table.column(USER_ID).to_numpy()
    group = table.column(USER_KEY).to_numpy() if USER_KEY in table.column_names else user_ids
    latest = _latest_rows(group, table.column(TIMESTAMP).to_numpy())
    known = user_ids[latest] >= FIRST_ID  # 0 / 1: the raw user id is lost
    skipped_users = int((~known).sum())
    rows = table.take(pa.array(latest[known]))

    item_vocab = _decodable(vocabs[ITEM_ID], ITEM_ID)
    cate_vocab = _decodable(vocabs[CATE_ID], CATE_ID)
    users = _decodable(vocabs[USER_ID], USER_ID).decode(rows.column(USER_ID).to_numpy())
    lengths = rows.column(HIST_LEN).to_numpy()
    stamps = rows.column(TIMESTAMP).to_numpy()
    items = _flat_valid(rows.column(HIST_ITEM_ID), lengths)
    cates = _flat_valid(rows.column(HIST_CATE_ID), lengths)
    raw_items = item_vocab.decode(items)
    raw_cates = cate_vocab.decode(cates)
    bounds = np.concatenate([[0], np.cumsum(lengths)])

    profiles: dict[str, dict[str, Any]] = {str(u): {} for u in users}
    skipped_profile = 0
    for col in profile_cols:
        ids = rows.column(col).to_numpy()
        raw = _decodable(vocabs[col], col).decode(ids)
        for user, value, code in zip(users.tolist(), raw.tolist(), ids.tolist(), strict=True):
            if code >= FIRST_ID:
                profiles[user][col] = value
            else:
                skipped_profile += 1

    histories: dict[str, list[tuple[str, str | None, float]]] = {}
    for r, user in enumerate(users.tolist()):
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        ts = float(stamps[r]) - 1.0
        histories[user] = [
            (item, cate, ts)
            for item, cate in zip(raw_items[lo:hi].tolist(), raw_cates[lo:hi].tolist(),
                                  strict=True)
        ]
    user_list = list(histories)
    for lo in range(0, len(user_list), USERS_PER_WRITE):
        chunk = user_list[lo : lo + USERS_PER_WRITE]
        store.replace_users({u: histories[u] for u in chunk}, {u: profiles[u] for u in chunk})

    categories = _item_categories(table, item_vocab, cate_vocab)
    store.put_items(categories)
    return LoadReport(
        users=len(user_list), behaviors=int(lengths.sum()), items=len(categories),
        skipped_unknown_users=skipped_users, skipped_profile_values=skipped_profile,
    )


def _flat_valid(column: pa.ChunkedArray, lengths: np.ndarray) -> np.ndarray:
    """The first `lengths[r]` ids of each row's list, concatenated: [sum(lengths)] int64."""
    parts = []
    for chunk in column.chunks:
        width = len(chunk.flatten()) // max(len(chunk), 1)
        parts.append(chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), width))
    matrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.int64)  # [R, T]
    if matrix.size == 0:
        return np.zeros(0, dtype=np.int64)
    valid = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    return matrix[valid].astype(np.int64)


def _item_categories(
    table: pa.Table, item_vocab: Vocabulary, cate_vocab: Vocabulary
) -> dict[str, str]:
    """Raw item -> raw category from candidates and histories, known ids only."""
    items = [table.column(ITEM_ID).to_numpy()]
    cates = [table.column(CATE_ID).to_numpy()]
    lengths = table.column(HIST_LEN).to_numpy()
    items.append(_flat_valid(table.column(HIST_ITEM_ID), lengths))
    cates.append(_flat_valid(table.column(HIST_CATE_ID), lengths))
    item, cate = np.concatenate(items), np.concatenate(cates)
    ok = (item >= FIRST_ID) & (cate >= FIRST_ID)
    pairs = np.unique(np.stack([item[ok], cate[ok]], axis=1), axis=0)  # [P, 2]
    if len(pairs) == 0:
        return {}
    raw_items = item_vocab.decode(pairs[:, 0]).tolist()
    raw_cates = cate_vocab.decode(pairs[:, 1]).tolist()
    return dict(zip(raw_items, raw_cates, strict=True))
