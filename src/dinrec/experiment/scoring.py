"""Score a dataset split with a model bundle, in batches: metrics, or a Parquet of scores.

Rows are read one Parquet record batch at a time, re-encoded into the bundle's vocabulary
when the dataset was built with another one (see tensors.remap_ids), and scored in eval
mode under inference_mode, so memory stays bounded by the batch size (plus one float per
row for the metrics).

Example:
    >>> metrics = evaluate_bundle("runs/r1/model", "runs/r1/data")  # doctest: +SKIP
    >>> rows = predict_to_parquet("runs/r1/model", "runs/r1/data", "s.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dinrec.bundle import load_vocab, read_manifest
from dinrec.data.dataset import Dataset, load_dataset, to_numpy
from dinrec.data.protocols.samples import CATE_ID, ITEM_ID, LABEL, TIMESTAMP, USER_ID, USER_KEY
from dinrec.data.remap import as_vocabularies, remap_ids
from dinrec.data.vocabulary import Vocabularies
from dinrec.experiment.data_match import check_bundle_dataset
from dinrec.inputs import prepare_inputs
from dinrec.metrics import auc, gauc, logloss
from dinrec.models import load_model

# dinrec.models first: importing dinrec.training.trainer before it is a circular import.
from dinrec.models.network import InterestNetwork
from dinrec.training.trainer import eval_mode


@dataclass
class ScoredBatch:
    """One record batch with its scores: the raw table and probabilities [n]."""

    table: pa.Table
    scores: np.ndarray


def open_bundle(path: str | os.PathLike[str]) -> tuple[InterestNetwork, Vocabularies | None]:
    """(model in eval mode, its vocabularies or None when the bundle has no vocab.json)."""
    model = load_model(path)
    vocab = load_vocab(path)
    return model, as_vocabularies(vocab) if vocab is not None else None


def score_batches(
    model: InterestNetwork,
    vocab: Vocabularies | None,
    dataset: Dataset,
    split: str,
    batch_size: int,
) -> Iterator[ScoredBatch]:
    """Yield each record batch of a split with the model's click probabilities."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    data_vocab = dataset.vocabularies() if vocab is not None else None
    parquet = pq.ParquetFile(dataset.split_path(split))
    for record_batch in parquet.iter_batches(batch_size=batch_size):
        table = pa.Table.from_batches([record_batch])
        x, _ = to_numpy(table)
        if vocab is not None and data_vocab is not None:
            x = remap_ids(x, data_vocab, vocab)
        feats = prepare_inputs(model.schema, x)
        with eval_mode(model), torch.inference_mode():
            prob = torch.sigmoid(model(feats)).squeeze(-1)  # [n]
        yield ScoredBatch(table, prob.float().numpy())


def evaluate_bundle(
    bundle: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 4096,
    on_mismatch: str = "warn",
) -> dict[str, float]:
    """{"auc", "gauc", "logloss", "samples"} of a bundle on a dataset split.

    GAUC groups by the dataset's user_key (the raw user across splits), so users first seen
    at test time, who all share the unknown user_id, still count as separate users.

    Args:
        on_mismatch: when the dataset was built with another protocol, options or source
            than the bundle's training data (as its manifest records): "warn"
            (DatasetMismatchWarning, naming each difference), "error" (refuse) or "ignore".
    """
    model, vocab = open_bundle(bundle)
    dataset = load_dataset(dataset_dir)
    check_bundle_dataset(bundle, read_manifest(bundle), dataset, on_mismatch)
    scores, labels, groups = [], [], []
    for part in score_batches(model, vocab, dataset, split, batch_size):
        scores.append(part.scores)
        labels.append(part.table[LABEL].to_numpy().astype(np.float32))
        groups.append(part.table[USER_KEY].to_numpy())
    if not scores:
        raise ValueError(f"{dataset.split_path(split)} has no rows")
    p, y, g = np.concatenate(scores), np.concatenate(labels), np.concatenate(groups)
    return {"auc": auc(y, p), "gauc": gauc(y, p, g), "logloss": logloss(y, p),
            "samples": float(len(y))}


def predict_to_parquet(
    bundle: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    split: str = "test",
    batch_size: int = 4096,
    on_mismatch: str = "warn",
) -> int:
    """Write one row per sample (user_key, raw user, item, category, timestamp, label,
    score) to a Parquet file, written to a temporary name and renamed when complete.

    Args:
        on_mismatch: as evaluate_bundle's.

    Returns:
        the number of rows written.
    """
    model, vocab = open_bundle(bundle)
    dataset = load_dataset(dataset_dir)
    check_bundle_dataset(bundle, read_manifest(bundle), dataset, on_mismatch)
    raw = dataset.vocabularies()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    schema = pa.schema([
        ("user_key", pa.int64()), ("user", pa.string()), ("item", pa.string()),
        ("category", pa.string()), ("timestamp", pa.int64()), ("label", pa.int8()),
        ("score", pa.float32()),
    ])
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for part in score_batches(model, vocab, dataset, split, batch_size):
                t = part.table
                columns = [
                    t[USER_KEY].to_numpy(),
                    raw[USER_ID].decode(t[USER_ID].to_numpy()),
                    raw[ITEM_ID].decode(t[ITEM_ID].to_numpy()),
                    raw[CATE_ID].decode(t[CATE_ID].to_numpy()),
                    t[TIMESTAMP].to_numpy(), t[LABEL].to_numpy(), part.scores,
                ]
                arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows += t.num_rows
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows
