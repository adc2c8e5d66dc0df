"""Id columns moved from one vocabulary to another through the raw ids.

A dataset's ids come from its own vocab.json; a model bundle may carry another vocabulary
(trained on another build). remap_ids re-encodes the id columns through the raw ids, so a
bundle can score any dataset of the same kind: ids the bundle never saw become unknown (1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dinrec.data.protocols.samples import CATE_ID, HIST_CATE_ID, HIST_ITEM_ID, ITEM_ID
from dinrec.data.vocabulary import OOV_ID, PAD_ID, Vocabularies

# History columns are encoded with their candidate's vocabulary.
_VOCAB_OF = {HIST_ITEM_ID: ITEM_ID, HIST_CATE_ID: CATE_ID}


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
