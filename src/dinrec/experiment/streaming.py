"""A run's splits read as streams: ParquetBatchLoader over the stored splits, bounded memory.

The in-memory path (tensors.py) loads a split whole; a streamed split is read row group by
row group through a shuffle window of `data.shuffle_window` rows, so memory does not grow
with the dataset. The validation rows (each user's last `training.validation_fraction` of
training samples) are a boolean mask over the train split's rows, computed from its user_key
column alone (8 bytes a row), and the train and validation loaders read the same file through
complementary masks: nothing is copied.

The order of a streamed epoch is a function of (seed, epoch, rank) only, so a resumed run
skips the batches its checkpoint had done and continues exactly where it stopped.

Example:
    >>> train, val = streamed_train(schema, dataset, config.data, config.training)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from dinrec.data.dataset import Dataset
from dinrec.data.loader import ParquetBatchLoader
from dinrec.data.protocols.samples import USER_KEY
from dinrec.data.splits import last_fraction_mask
from dinrec.experiment.config import DataConfig, TrainingConfig
from dinrec.feature_column import get_feature_names
from dinrec.schema import FeatureSchema

_MIB = 1 << 20


def model_columns(schema: FeatureSchema) -> list[str]:
    """The columns a model's batches need: its inputs, then the GAUC group (user_key)."""
    names = get_feature_names(schema.columns)
    return [*names, USER_KEY] if USER_KEY not in names else names


def split_loader(
    schema: FeatureSchema, dataset: Dataset, split: str, batch_size: int, *,
    shuffle: bool = False, seed: int = 0, window: int = 262_144,
    keep: np.ndarray | None = None, shard: tuple[int, int] | None = None,
    drop_last: bool = False,
) -> ParquetBatchLoader:
    """A loader of one split's model columns (see ParquetBatchLoader for the arguments)."""
    return ParquetBatchLoader(dataset.split_path(split), batch_size,
                              columns=model_columns(schema), shuffle=shuffle, seed=seed,
                              shuffle_buffer_rows=window, keep=keep, shard=shard,
                              drop_last=drop_last)


def use_streaming(data: DataConfig, schema: FeatureSchema, dataset: Dataset) -> tuple[bool, str]:
    """(stream?, why, for the log): data.streaming if set, else the train split's decoded
    size against data.streaming_threshold_mb."""
    if data.streaming is not None:
        return data.streaming, f"data.streaming = {str(data.streaming).lower()}"
    mib = split_loader(schema, dataset, "train", 1).decoded_bytes / _MIB
    limit = data.streaming_threshold_mb
    verdict = "above" if mib > limit else "within"
    return mib > limit, (f"automatic: the train split is ~{mib:,.0f} MiB decoded, {verdict} "
                         f"data.streaming_threshold_mb = {limit}")


def validation_mask(dataset: Dataset, fraction: float) -> np.ndarray:
    """[N] bool over the train split: each user's last `fraction` of samples (time order).

    The same rows as tensors.validation_split holds out; reads only the user_key column.
    """
    users = pq.read_table(dataset.split_path("train"), columns=[USER_KEY]).column(0)
    held = last_fraction_mask(users.to_numpy().astype(np.int64, copy=False), fraction)
    if not held.any() or held.all():
        raise ValueError(f"training.validation_fraction={fraction} leaves "
                         f"{'no' if not held.any() else 'only'} validation rows of "
                         f"{len(held)}; change it (0 disables validation)")
    return held


def streamed_train(
    schema: FeatureSchema, dataset: Dataset, data: DataConfig, t: TrainingConfig,
    shard: tuple[int, int] | None = None,
) -> tuple[ParquetBatchLoader, ParquetBatchLoader | None]:
    """(train, validation or None) loaders of the train split; a shard reads its row groups.

    Under several ranks the train loader drops its last partial batch (every rank's batches
    are full, so they weigh the same in DDP's gradient average).
    """
    held = validation_mask(dataset, t.validation_fraction) if t.validation_fraction else None
    per_rank = t.batch_size // (shard[1] if shard else 1)
    train = split_loader(schema, dataset, "train", per_rank, shuffle=True, seed=t.seed,
                         window=data.shuffle_window, shard=shard, drop_last=shard is not None,
                         keep=None if held is None else ~held)
    validation = None
    if held is not None:
        validation = split_loader(schema, dataset, "train", t.eval_batch_size, keep=held,
                                  shard=shard)
    return train, validation
