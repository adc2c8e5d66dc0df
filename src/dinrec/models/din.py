"""DIN and EmbeddingMLP (the paper's Base Model) with DeepCTR's constructor signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dinrec.bundle import register_model_class
from dinrec.feature_column import FeatureColumn
from dinrec.models.config import DEFAULT_INIT_STD, ModelConfig
from dinrec.models.devices import check_device
from dinrec.models.keras_facade import KerasFacade
from dinrec.schema import FeatureSchema


def _build(model: KerasFacade, kind: str, pooling: str, settings: dict[str, Any]) -> None:
    """Resolve the columns and the ModelConfig from a constructor's arguments, then build."""
    settings = {k: v for k, v in settings.items() if k not in ("self", "__class__")}
    check_device(settings.pop("device", None), settings.pop("gpus", None))
    columns = settings.pop("dnn_feature_columns")
    history = settings.pop("history_feature_list")
    groups = settings.pop("history_groups")
    for key in ("dnn_hidden_units", "att_hidden_size"):
        if key in settings and not isinstance(settings[key], int):
            settings[key] = tuple(settings[key])
    config = ModelConfig(model=kind, history_pooling=pooling, **settings)
    schema = FeatureSchema.resolve(columns, history, history_groups=groups)
    KerasFacade.__init__(model, schema, config)


@register_model_class
class DIN(KerasFacade):
    """Deep Interest Network (Zhou et al., KDD 2018).

    Behaviors `hist_<f>` for f in history_feature_list are pooled by the local activation
    unit: weight_t = MLP([k_t, q, k_t - q, k_t * q]), interest = sum_t weight_t * k_t over
    non-padded behaviors (no softmax unless att_weight_normalization). forward() returns
    logits [B, 1]; predict() returns probabilities.

    Args follow DeepCTR's DIN, with two defaults changed (measured in docs/quality.md):
    embeddings are regularized by the paper's mini-batch aware regularization (strength
    mba_lambda, default 1.0) unless l2_reg_embedding is given, which selects DeepCTR's
    full-table L2 as before (or pass embedding_regularization='l2' / 'mba' explicitly); and
    init_std is 0.05 instead of DeepCTR's 1e-4, with which the activation unit's k * q input
    starts at ~1e-8 and DIN with Dice lost 0.03-0.06 GAUC on local-activation logs. DeepCTR-Torch's
    device="cpu" and gpus=None are accepted; another device is refused with a clear error.

    Long histories (dinrec additions, off by default; docs/long_sequences.md):
    history_search="topk" / "category" first keeps history_search_k behaviors per candidate
    (SIM's soft / hard search, matching history_search_feature), in training and serving.

    Several behavior groups (dinrec addition; docs/long_sequences.md): history_groups maps a
    group name to its features, e.g. {"buy": ["item_id", "cate_id"]}; group g reads the
    sequences `<g>_hist_<f>` (the prefix DeepCTR's DIEN gives its second sequence,
    `neg_hist_<f>`), so history_feature_list and its `hist_<f>` keep DeepCTR's meaning and
    a DeepCTR script is untouched. A name prefix, not a new column type: the columns stay
    plain VarLenSparseFeats that share tables by embedding_name as DeepCTR's do. Each group
    has its own mask (its length_name, else id 0), maxlen, activation unit and interest
    vector, concatenated after history_feature_list's in the MLP input; history_feature_list
    may then be empty. Per-behavior values: a VarLenDenseFeat named `hist_<x>` (or
    `<g>_hist_<x>`) enters its history's activation unit beside each behavior.
    A weight_name on a history sequence weights each behavior (DeepCTR's and DeepCTR-Torch's
    DIN read it but ignore it): interest = sum_t a_t * w_t * k_t, a_t the activation weight
    after masking (after the softmax under att_weight_normalization), w_t the weight input
    [B, T] as DeepCTR's WeightedSequenceLayer gives it (softmax over the valid behaviors when
    weight_norm, DeepCTR's default; as is otherwise), padding exactly 0 whatever its weight.
    The unit's input is unchanged: weight 2 counts the behavior twice, 0 removes it. One
    weight column per history (it weights the whole behavior; two are refused); a
    VarLenDenseFeat of the same name also enters the unit as a per-behavior value.

    Example:
        >>> from dinrec.feature_column import SparseFeat, VarLenSparseFeat
        >>> cols = [SparseFeat("item_id", 4, 8),
        ...         VarLenSparseFeat(SparseFeat("hist_item_id", 4, 8, embedding_name="item_id"),
        ...                          maxlen=3)]
        >>> model = DIN(cols, ["item_id"])
    """

    def __init__(
        self,
        dnn_feature_columns: Sequence[FeatureColumn],
        history_feature_list: Sequence[str],
        dnn_use_bn: bool = False,
        dnn_hidden_units: Sequence[int] = (256, 128, 64),
        dnn_activation: str = "relu",
        att_hidden_size: Sequence[int] = (80, 40),
        att_activation: str = "dice",
        att_weight_normalization: bool = False,
        l2_reg_dnn: float = 0,
        l2_reg_embedding: float | None = None,
        dnn_dropout: float = 0,
        seed: int = 1024,
        task: str = "binary",
        embedding_regularization: str | None = None,
        mba_lambda: float | None = None,
        init_std: float = DEFAULT_INIT_STD,
        sparse_embeddings: bool = False,
        history_search: str | None = None,
        history_search_k: int = 50,
        history_search_feature: str | None = None,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        history_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        settings = dict(locals())
        _build(self, "DIN", "attention", settings)

    @classmethod
    def from_schema(cls, schema: FeatureSchema, config: ModelConfig) -> Any:
        """Build from a resolved schema and config (used by load_model)."""
        model = cls.__new__(cls)
        KerasFacade.__init__(model, schema, config)
        return model


@register_model_class
class EmbeddingMLP(KerasFacade):
    """The paper's Base Model: Embedding & MLP with behaviors sum-pooled (or mean-pooled).

    Same inputs and arguments as DIN minus the attention ones; history_pooling picks
    "sum" (the paper) or "mean". A history's weight_name weights each behavior as DeepCTR's
    WeightedSequenceLayer does: sum_t w_t k_t (over the valid count for mean).
    """

    def __init__(
        self,
        dnn_feature_columns: Sequence[FeatureColumn],
        history_feature_list: Sequence[str],
        dnn_use_bn: bool = False,
        dnn_hidden_units: Sequence[int] = (256, 128, 64),
        dnn_activation: str = "relu",
        l2_reg_dnn: float = 0,
        l2_reg_embedding: float | None = None,
        dnn_dropout: float = 0,
        seed: int = 1024,
        task: str = "binary",
        embedding_regularization: str | None = None,
        mba_lambda: float | None = None,
        history_pooling: str = "sum",
        init_std: float = DEFAULT_INIT_STD,
        sparse_embeddings: bool = False,
        history_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        settings = dict(locals())
        _build(self, "EmbeddingMLP", settings.pop("history_pooling"), settings)

    from_schema = DIN.from_schema


MODEL_CLASSES: dict[str, Any] = {"DIN": DIN, "EmbeddingMLP": EmbeddingMLP}


def build_model(schema: FeatureSchema, config: ModelConfig) -> Any:
    """The model class named by config.model, built from a schema (the experiment runner)."""
    return MODEL_CLASSES[config.model].from_schema(schema, config)
