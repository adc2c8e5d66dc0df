"""Which past behaviors a model attends to for each candidate: DIN's local activation.

For a user (a raw id), the history is the one of the user's latest sample in a dataset (test
split first, then train); each candidate (a raw item id, its category looked up in the
dataset) is scored with that history, and the attention weight of every behavior is read
from model.interest(). Ids are shown raw, decoded through the dataset's vocabulary; the model
sees them encoded through its own bundle vocabulary.

Example:
    >>> ex = explain_user(model, vocab, dataset, "u17", ["i3", "i250"])  # doctest: +SKIP
    >>> print(ex.format_table())                                         # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from dinrec.data.dataset import SPLITS, Dataset, to_numpy
from dinrec.data.protocols.samples import (
    CATE_ID,
    HIST_CATE_ID,
    HIST_ITEM_ID,
    HIST_LEN,
    ITEM_ID,
    TIMESTAMP,
    USER_ID,
)
from dinrec.data.remap import as_vocabularies, remap_ids
from dinrec.data.vocabulary import OOV_ID, Vocabularies
from dinrec.inputs import prepare_inputs

# dinrec.models first: importing dinrec.training.trainer before it is a circular import.
from dinrec.models.network import InterestNetwork
from dinrec.training.evaluation import eval_mode


@dataclass(frozen=True)
class Explanation:
    """Attention of one user's behaviors for each candidate.

    Args:
        user: the raw user id.
        behaviors: [(raw item, raw category)] of the valid history, oldest first (T).
        candidates: [(raw item, raw category)] (C).
        weights: [C, T] attention weight of each behavior for each candidate.
        scores: [C] predicted click probability of each candidate.
        attention: False for the Base Model, whose "weights" are the pooling mask.
    """

    user: str
    behaviors: list[tuple[str, str]]
    candidates: list[tuple[str, str]]
    weights: np.ndarray
    scores: np.ndarray
    attention: bool

    def save_heatmap(self, path: str | os.PathLike[str], title: str) -> Path:
        """The heatmap PNG: candidates (with scores) by behaviors, colored by category."""
        from dinrec.experiment.plots import plot_attention

        return plot_attention(
            self.weights, [f"{i} ({c})" for i, c in self.behaviors],
            [f"{i} ({c}) p={s:.2f}" for (i, c), s in
             zip(self.candidates, self.scores, strict=True)],
            path, title=title, behavior_groups=[c for _, c in self.behaviors],
            candidate_groups=[c for _, c in self.candidates])

    def format_table(self) -> str:
        """A text table: one row per behavior, one weight column per candidate."""
        heads = [f"{item} ({cate})" for item, cate in self.candidates]
        width = max(10, *(len(h) for h in heads))
        beh_width = max([len("behavior (category)")]
                        + [len(f"{i} ({c})") for i, c in self.behaviors])
        lines = [f"user {self.user}: {len(self.behaviors)} past behaviors, "
                 f"{'attention weights' if self.attention else 'sum pooling (no attention)'}"]
        lines.append(f"{'#':>3}  {'behavior (category)':<{beh_width}}  "
                     + "  ".join(f"{h:>{width}}" for h in heads))
        for t, (item, cate) in enumerate(self.behaviors):
            cells = "  ".join(f"{self.weights[c, t]:>{width}.4f}"
                              for c in range(len(self.candidates)))
            lines.append(f"{t + 1:>3}  {f'{item} ({cate})':<{beh_width}}  {cells}")
        lines.append(f"{'':>3}  {'score':<{beh_width}}  "
                     + "  ".join(f"{s:>{width}.4f}" for s in self.scores))
        return "\n".join(lines)


def _latest_row(dataset: Dataset, user_code: int) -> pa.Table:
    """The user's latest sample (test split first): a one-row table."""
    for split in reversed(SPLITS):
        table = dataset.read(split)
        rows = table.filter(pc.equal(table[USER_ID], user_code))
        if rows.num_rows:
            latest = int(np.argmax(rows[TIMESTAMP].to_numpy()))
            return rows.slice(latest, 1)
    raise ValueError(f"user id {user_code} has no sample in {dataset.path}")


def item_categories(dataset: Dataset) -> dict[int, int]:
    """{item id: category id} (the dataset's encoding) over candidates and histories."""
    items, cates = [], []
    for split in SPLITS:
        table = dataset.read(split, [ITEM_ID, CATE_ID, HIST_ITEM_ID, HIST_CATE_ID])
        items += [table[ITEM_ID].to_numpy(), pc.list_flatten(table[HIST_ITEM_ID]).to_numpy()]
        cates += [table[CATE_ID].to_numpy(), pc.list_flatten(table[HIST_CATE_ID]).to_numpy()]
    item = np.concatenate(items)
    cate = np.concatenate(cates)
    keys, first = np.unique(item, return_index=True)
    return dict(zip(keys.tolist(), cate[first].tolist(), strict=True))


def user_history(dataset: Dataset, user: str) -> dict[str, np.ndarray]:
    """The model inputs of the user's latest sample (dataset ids), one row."""
    vocabs = dataset.vocabularies()
    code = int(vocabs.encode(USER_ID, np.array([user]))[0])
    if code == OOV_ID:
        raise ValueError(f"user {user!r} is not in the vocabulary of {dataset.path} (users "
                         "first seen at test time share the unknown id and cannot be told apart)")
    row = _latest_row(dataset, code)
    x, _ = to_numpy(row, [c for c in row.column_names
                          if c not in ("label", TIMESTAMP, "user_key")])
    return x


def explain_user(
    model: InterestNetwork,
    vocab: Mapping[str, Any] | Vocabularies,
    dataset: Dataset,
    user: str,
    candidates: Sequence[str],
) -> Explanation:
    """Attention weights of `user`'s history for each candidate item (raw ids).

    Args:
        model: a DIN or EmbeddingMLP (e.g. dinrec.load_model(bundle)).
        vocab: the model's vocabulary (the bundle's vocab.json).
        dataset: where the user's history and the candidates' categories come from.
        user: raw user id.
        candidates: raw item ids.
    """
    if not candidates:
        raise ValueError("give at least one candidate item")
    data_vocab = dataset.vocabularies()
    x = user_history(dataset, user)
    n_valid = int(x[HIST_LEN][0]) if HIST_LEN in x else int(np.count_nonzero(x[HIST_ITEM_ID]))
    cand_ids = data_vocab.encode(ITEM_ID, np.asarray(list(candidates)))
    unknown = [c for c, i in zip(candidates, cand_ids, strict=True) if i == OOV_ID]
    if unknown:
        raise ValueError(f"candidate item {unknown[0]!r} is not in the vocabulary of "
                         f"{dataset.path}; its category is unknown")
    categories = item_categories(dataset)
    cand_cates = np.array([categories[int(i)] for i in cand_ids], dtype=np.int64)
    n = len(candidates)
    batch = {k: np.repeat(v, n, axis=0) for k, v in x.items()}
    batch[ITEM_ID] = cand_ids.astype(np.int64)
    batch[CATE_ID] = cand_cates
    batch = remap_ids(batch, data_vocab, as_vocabularies(vocab))
    inputs = prepare_inputs(model.schema, batch)
    with eval_mode(model), torch.inference_mode():
        _, weights = model.interest(inputs)  # [C, T]
        scores = torch.sigmoid(model(inputs)).squeeze(-1)  # [C]
    hist_items = data_vocab[ITEM_ID].decode(x[HIST_ITEM_ID][0][:n_valid])
    hist_cates = data_vocab[CATE_ID].decode(x[HIST_CATE_ID][0][:n_valid])
    cand_cate_raw = data_vocab[CATE_ID].decode(cand_cates)
    return Explanation(
        user=user,
        behaviors=list(zip(hist_items.tolist(), hist_cates.tolist(), strict=True)),
        candidates=list(zip([str(c) for c in candidates], cand_cate_raw.tolist(), strict=True)),
        weights=weights[:, :n_valid].float().numpy(),
        scores=scores.float().numpy(),
        attention=getattr(model, "attention", None) is not None,
    )


def pick_demo_case(dataset: Dataset, min_per_category: int = 3) -> tuple[str, list[str]]:
    """A user with two well-represented categories in its history, and one candidate from
    each (the category's most frequent training item the user has not interacted with).

    Used by the demo to draw the paper's local-activation picture without hand-picking.
    """
    vocabs = dataset.vocabularies()
    test = dataset.read("test", [USER_ID, HIST_CATE_ID, HIST_ITEM_ID, TIMESTAMP])
    users = test[USER_ID].to_numpy()
    order = np.lexsort((test[TIMESTAMP].to_numpy(), users))
    last = order[np.r_[users[order][1:] != users[order][:-1], True]]  # each user's last row
    best: tuple[int, int, np.ndarray, np.ndarray] | None = None
    hist_cates = test[HIST_CATE_ID]
    for row in last.tolist():
        user_id = int(users[row])
        if user_id == OOV_ID:
            continue
        cates = np.asarray(hist_cates[row].as_py())
        cates = cates[cates > OOV_ID]
        kinds, counts = np.unique(cates, return_counts=True)
        if len(kinds) < 2:
            continue
        top = np.argsort(-counts, kind="stable")[:2]
        if counts[top[1]] < min_per_category:
            continue
        key = int(counts[top[1]])
        if best is None or key > best[0]:
            best = (key, user_id, kinds[top], np.asarray(test[HIST_ITEM_ID][row].as_py()))
    if best is None:
        raise ValueError(f"no test user of {dataset.path} has two categories with "
                         f">= {min_per_category} behaviors each")
    _, user_id, cate_pair, seen = best
    train = dataset.read("train", [ITEM_ID, CATE_ID])
    items, cates = train[ITEM_ID].to_numpy(), train[CATE_ID].to_numpy()
    picks = []
    for cate in cate_pair.tolist():
        pool = items[(cates == cate) & ~np.isin(items, seen) & (items > OOV_ID)]
        if len(pool) == 0:
            pool = items[(cates == cate) & (items > OOV_ID)]
        kinds, counts = np.unique(pool, return_counts=True)
        picks.append(int(kinds[np.argmax(counts)]))
    user = str(vocabs[USER_ID].decode(np.array([user_id]))[0])
    return user, vocabs[ITEM_ID].decode(np.array(picks)).tolist()
