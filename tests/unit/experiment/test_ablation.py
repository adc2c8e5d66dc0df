"""The paper's variants: activations, pooling and regularization per variant."""

from __future__ import annotations

import pytest

from dinrec.experiment.ablation import PAPER_ABLATION, variant_config, variants
from dinrec.experiment.config import config_from_dict

SHARED = {"data": {"source": "synthetic", "protocol": "click-log"},
          "model": {"dnn_hidden_units": [32, 16], "att_hidden_size": [16, 8],
                    "att_activation": "relu", "embedding_regularization": "mba"}}


@pytest.mark.parametrize(
    ("slug", "expected"),
    [
        ("base", ("EmbeddingMLP", "sum", "dice", "prelu", "l2")),  # att_* back to defaults
        ("din", ("DIN", "attention", "prelu", "prelu", "l2")),
        ("din-mba", ("DIN", "attention", "prelu", "prelu", "mba")),
        ("din-dice", ("DIN", "attention", "prelu", "dice", "l2")),  # Dice in the MLP
        ("din-mba-dice", ("DIN", "attention", "prelu", "dice", "mba")),
    ],
)
def test_variant_sets_model_activations_and_regularization(slug, expected) -> None:
    (variant,) = variants([slug])
    net = config_from_dict(variant_config(SHARED, variant)).model.network
    assert (net.model, net.history_pooling, net.att_activation, net.dnn_activation,
            net.embedding_regularization) == expected
    assert net.dnn_hidden_units == (32, 16)  # shared settings are kept


def test_paper_ablation_labels() -> None:
    assert [v.label for v in variants(PAPER_ABLATION)] == [
        "Base Model", "DIN", "DIN+Dice", "DIN+MBA", "DIN+MBA+Dice"]
