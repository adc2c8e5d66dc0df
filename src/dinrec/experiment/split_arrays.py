"""A dataset split in numpy (SplitArrays), a per-user validation split, model-ready batches.

read_split re-encodes ids into another vocabulary when asked (dinrec.data.remap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dinrec.data.dataset import Dataset
from dinrec.data.protocols.samples import USER_KEY
from dinrec.data.remap import as_vocabularies, remap_ids
from dinrec.data.splits import last_fraction_mask
from dinrec.data.vocabulary import Vocabularies
from dinrec.inputs import prepare_group, prepare_inputs, prepare_labels
from dinrec.schema import FeatureSchema
from dinrec.training.batches import TensorBatches


@dataclass
class SplitArrays:
    """One split in numpy: model inputs x, labels y [N] float32, GAUC groups [N] int64."""

    x: dict[str, np.ndarray]
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> SplitArrays:
        return SplitArrays({k: v[mask] for k, v in self.x.items()}, self.y[mask],
                           self.groups[mask])


def read_split(
    dataset: Dataset, split: str, vocab: Mapping[str, object] | Vocabularies | None = None
) -> SplitArrays:
    """A dataset split as arrays; ids re-encoded into `vocab` when it differs from the
    dataset's own (see remap_ids)."""
    x, y = dataset.to_numpy(split)
    groups = dataset.read(split, [USER_KEY]).column(USER_KEY).to_numpy().astype(np.int64)
    if vocab is not None:
        x = remap_ids(x, dataset.vocabularies(), as_vocabularies(vocab))
    return SplitArrays(x, y, groups)


def validation_split(arrays: SplitArrays, fraction: float) -> tuple[SplitArrays, SplitArrays]:
    """(train, validation): each user's last `fraction` of samples in time order held out.

    Rows of a dataset split are grouped by user in time order, as last_fraction_mask needs;
    holding out each user's latest samples mirrors how the test split was cut.
    """
    held = last_fraction_mask(arrays.groups, fraction)
    if not held.any() or held.all():
        raise ValueError(f"training.validation_fraction={fraction} leaves "
                         f"{'no' if not held.any() else 'only'} validation rows of "
                         f"{len(arrays)}; change it (0 disables validation)")
    return arrays.take(~held), arrays.take(held)


def batches(
    schema: FeatureSchema, arrays: SplitArrays, batch_size: int, shuffle: bool, seed: int
) -> TensorBatches:
    """TensorBatches of the model's inputs plus the user_key column GAUC groups by."""
    feats = prepare_inputs(schema, arrays.x)
    n = len(arrays)
    feats[USER_KEY] = prepare_group(arrays.groups, n, USER_KEY)
    return TensorBatches(feats, prepare_labels(arrays.y, n), batch_size, shuffle, seed=seed)
