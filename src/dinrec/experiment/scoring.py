"""Score a dataset split with a model bundle, in batches: metrics, or a Parquet of scores.

Rows are read one Parquet record batch at a time, re-encoded into the bundle's vocabulary
when the dataset was built with another one (see dinrec.data.remap.remap_ids), and scored
in eval mode under inference_mode, so memory stays bounded by the batch size (plus, for the
metrics, a score, a label and a user_key per row).

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
from dinrec.experiment.run_dir import evaluate_source
from dinrec.inputs import prepare_inputs
from dinrec.models import load_model
from dinrec.models.network import InterestNetwork
from dinrec.training.evaluation import eval_mode


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


class SplitBatches:
    """A dataset split as a batch source in a bundle's vocabulary, one Parquet record batch
    at a time: (the model's inputs plus the user_key GAUC groups by, labels [B] float32).

    What score_source / evaluate_model iterate; tables() gives the raw rows beside the
    inputs (predict_to_parquet writes them out with the scores).
    """

    def __init__(self, model: InterestNetwork, vocab: Vocabularies | None, dataset: Dataset,
                 split: str, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.vocab = vocab
        self.dataset = dataset
        self.split = split
        self.batch_size = batch_size
        self.num_rows = pq.ParquetFile(dataset.split_path(split)).metadata.num_rows

    def tables(self) -> Iterator[tuple[pa.Table, dict[str, torch.Tensor], np.ndarray]]:
        """(raw record batch, model inputs, labels [B] float32) per record batch."""
        data_vocab = self.dataset.vocabularies() if self.vocab is not None else None
        parquet = pq.ParquetFile(self.dataset.split_path(self.split))
        for record_batch in parquet.iter_batches(batch_size=self.batch_size):
            table = pa.Table.from_batches([record_batch])
            x, y = to_numpy(table)
            if self.vocab is not None and data_vocab is not None:
                x = remap_ids(x, data_vocab, self.vocab)
            yield table, prepare_inputs(self.model.schema, x), y

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for table, feats, y in self.tables():
            # user_key is never a model input (to_numpy leaves it out), so it cannot shadow one.
            groups = torch.from_numpy(table[USER_KEY].to_numpy().astype(np.int64))  # [B]
            yield {**feats, USER_KEY: groups}, torch.from_numpy(y)


def score_batches(
    model: InterestNetwork,
    vocab: Vocabularies | None,
    dataset: Dataset,
    split: str,
    batch_size: int,
) -> Iterator[ScoredBatch]:
    """Yield each record batch of a split with the model's click probabilities."""
    for table, feats, _ in SplitBatches(model, vocab, dataset, split, batch_size).tables():
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

    The metrics are the runs' own (run_dir.evaluate_source: training.evaluation.evaluate_model,
    dinrec.metrics), so `dinrec evaluate` on a run's data gives its recorded test metrics.
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
    source = SplitBatches(model, vocab, dataset, split, batch_size)
    if source.num_rows == 0:
        raise ValueError(f"{dataset.split_path(split)} has no rows")
    return {**evaluate_source(model, source), "samples": float(source.num_rows)}


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
