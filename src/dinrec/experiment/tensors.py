"""Dataset splits as model-ready batch sources, a per-user validation split, id remapping.

A dataset's ids come from its own vocab.json; a model bundle may carry another vocabulary
(trained on another build). remap_ids re-encodes the id columns through the raw ids, so a
bundle can score any dataset of the same kind: ids the bundle never saw become unknown (1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dinrec.data.dataset import Dataset
from dinrec.data.protocols_samples import CATE_ID, HIST_CATE_ID, HIST_ITEM_ID, ITEM_ID, USER_KEY
from dinrec.data.splits import last_fraction_mask
from dinrec.data.vocabulary import OOV_ID, PAD_ID, Vocabularies
from dinrec.inputs import prepare_group, prepare_inputs, prepare_labels
from dinrec.schema import FeatureSchema
from dinrec.training.batches import TensorBatches

# History columns are encoded with their candidate's vocabulary.
_VOCAB_OF = {HIST_ITEM_ID: ITEM_ID, HIST_CATE_ID: CATE_ID}


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


def as_vocabularies(vocab: Mapping[str, object] | Vocabularies) -> Vocabularies:
    """A Vocabularies from itself or from its vocab.json dict."""
    if isinstance(vocab, Vocabularies):
        return vocab
    return Vocabularies.from_json_dict(vocab)


def remap_ids(
    x: dict[str, np.ndarray], source: Vocabularies, target: Vocabularies
) -> dict[str, np.ndarray]:
    """Id columns of `x` moved from the `source` vocabularies to `target` via raw ids.

    Padding stays 0 and unknown stays 1; a raw id `target` does not know becomes 1.
    Columns whose vocabularies are equal (the usual case) are returned unchanged.
    """
    out = dict(x)
    tables: dict[str, np.ndarray] = {}
    for column, values in x.items():
        name = _VOCAB_OF.get(column, column)
        if name not in source or name not in target or source[name] == target[name]:
            continue
        if name not in tables:
            src, dst = source[name], target[name]
            if src.is_hashed or dst.is_hashed:
                raise ValueError(f"feature {name!r}: the dataset's and the model's vocabularies "
                                 "differ and one of them is hashed; rebuild the dataset with "
                                 "the model's vocab")
            table = dst.encode(src.decode(np.arange(src.size)))  # [S] target id of each id
            table[PAD_ID], table[OOV_ID] = PAD_ID, OOV_ID
            tables[name] = table
        out[column] = tables[name][values]
    return out
