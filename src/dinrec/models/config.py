"""ModelConfig: the frozen, typed hyper-parameters a DIN or Base Model is built from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dinrec.layers.activation import ACTIVATIONS
from dinrec.layers.search import SEARCH_MODES

MODEL_KINDS = ("DIN", "EmbeddingMLP")
HISTORY_POOLINGS = ("attention", "sum", "mean")
EMBEDDING_REGULARIZATIONS = ("l2", "mba")
# Default strength of mini-batch aware regularization (see training/regularization.py).
# Chosen on validation splits (bench/quality.py --split val, docs/quality.md): over
# {0.01, 1, 10}, 1 lowers ml-100k validation logloss by 0.013-0.02 at equal GAUC; 0.01
# (the old default) is indistinguishable from no regularization; 10 costs GAUC.
DEFAULT_MBA_LAMBDA = 1.0
# DeepCTR's full-table L2 strength, used when l2_reg_embedding is given without a value.
DEEPCTR_L2_REG_EMBEDDING = 1e-6
# Embedding init std. DeepCTR's 1e-4 makes the activation unit's k * q input ~1e-8 at the
# start, so attention starts blind and Dice's gate (normalised by a spread that small) is
# near-discontinuous; 0.05 was chosen on validation splits (docs/quality.md).
DEFAULT_INIT_STD = 0.05


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters with DeepCTR's names and defaults (plus dinrec's additions).

    model: "DIN" or "EmbeddingMLP" (the paper's Base Model).
    history_pooling: "attention" for DIN; "sum" (paper) or "mean" for the Base Model.
    embedding_regularization: "l2" (DeepCTR: l2_reg_embedding * sum of squares of every
        table row, every step) or "mba" (the paper's mini-batch aware regularization:
        only rows whose ids occur in the batch, each scaled by 1 / its training frequency).
        None (the default) picks "l2" when l2_reg_embedding is given (DeepCTR code keeps
        its meaning) and the paper's "mba" otherwise.
    l2_reg_embedding: strength of "l2"; None means DeepCTR's 1e-6 when "l2" is chosen.
    mba_lambda: strength of "mba"; None means DEFAULT_MBA_LAMBDA.
    init_std: std of the normal embedding initializer (DEFAULT_INIT_STD; DeepCTR's 1e-4).
    sparse_embeddings: sparse embedding gradients: each step touches only the batch's rows
        of each table (the win for huge vocabularies). The named optimizers handle them
        ('adam' becomes row-wise LazyAdam). Needs embedding_regularization="mba" or
        l2_reg_embedding=0: full-table L2 changes every row every step.
    history_search: None (attend to every behavior), "topk" (first keep the
        history_search_k behaviors most similar to the candidate by embedding inner
        product) or "category" (first keep the history_search_k latest behaviors whose
        history_search_feature equals the candidate's): SIM's soft and hard search.
    history_search_k: behaviors kept per sample by history_search.
    history_search_feature: the feature of history_feature_list matched by "category"
        (e.g. "cate_id"); None: the last one.
    """

    model: str = "DIN"
    history_pooling: str = "attention"
    dnn_use_bn: bool = False
    dnn_hidden_units: tuple[int, ...] = (256, 128, 64)
    dnn_activation: str = "relu"
    att_hidden_size: tuple[int, ...] = (80, 40)
    att_activation: str = "dice"
    att_weight_normalization: bool = False
    l2_reg_dnn: float = 0.0
    l2_reg_embedding: float | None = None
    dnn_dropout: float = 0.0
    seed: int = 1024
    task: str = "binary"
    embedding_regularization: str | None = None
    mba_lambda: float | None = None
    init_std: float = DEFAULT_INIT_STD
    sparse_embeddings: bool = False
    history_search: str | None = None
    history_search_k: int = 50
    history_search_feature: str | None = None

    def __post_init__(self) -> None:
        for name in ("dnn_hidden_units", "att_hidden_size"):
            value = getattr(self, name)
            if isinstance(value, int) or not all(
                isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in value
            ):
                raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.embedding_regularization is None:  # resolved once, stored resolved
            mode = "mba" if self.l2_reg_embedding is None else "l2"
            object.__setattr__(self, "embedding_regularization", mode)
        if self.l2_reg_embedding is None:
            l2 = DEEPCTR_L2_REG_EMBEDDING if self.embedding_regularization == "l2" else 0.0
            object.__setattr__(self, "l2_reg_embedding", l2)
        self._choice("model", MODEL_KINDS)
        self._choice("history_pooling", HISTORY_POOLINGS)
        self._choice("embedding_regularization", EMBEDDING_REGULARIZATIONS)
        self._choice("task", ("binary",))
        for name in ("dnn_activation", "att_activation"):
            value = getattr(self, name)
            if not isinstance(value, str) or value.lower() not in ACTIVATIONS:
                raise ValueError(f"{name}: unknown activation {value!r}; valid: {ACTIVATIONS}")
        for name in ("l2_reg_dnn", "l2_reg_embedding", "init_std"):
            self._nonneg(name)
        if self.mba_lambda is not None:
            self._nonneg("mba_lambda")
        if not 0.0 <= float(self.dnn_dropout) < 1.0:
            raise ValueError(f"dnn_dropout must be in [0, 1), got {self.dnn_dropout!r}")
        if (self.sparse_embeddings and self.embedding_regularization == "l2"
                and self.resolved_l2_reg_embedding > 0):
            raise ValueError(
                f"sparse_embeddings=True with l2_reg_embedding={self.l2_reg_embedding} "
                "(embedding_regularization='l2') penalises every row of every table each "
                "step, a dense gradient; use embedding_regularization='mba' (L2 on the "
                "batch's rows only, the paper's method) or l2_reg_embedding=0"
            )
        self._check_long_history()
        if self.model == "DIN" and self.history_pooling != "attention":
            raise ValueError("DIN pools history by attention; use EmbeddingMLP for sum/mean")
        if self.model == "EmbeddingMLP" and self.history_pooling == "attention":
            raise ValueError("EmbeddingMLP pools history by 'sum' or 'mean', not attention")

    def _check_long_history(self) -> None:
        if self.history_search is not None:
            self._choice("history_search", SEARCH_MODES)
        k = self.history_search_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"history_search_k must be a positive int, got {k!r}")
        if self.model != "DIN" and self.history_search is not None:
            raise ValueError("history_search is a DIN (attention) setting")

    def _choice(self, name: str, valid: tuple[str, ...]) -> None:
        if getattr(self, name) not in valid:
            raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")

    def _nonneg(self, name: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    @property
    def resolved_l2_reg_embedding(self) -> float:
        """l2_reg_embedding as resolved in __post_init__ (never None after it)."""
        return float(self.l2_reg_embedding or 0.0)

    @property
    def resolved_mba_lambda(self) -> float:
        return DEFAULT_MBA_LAMBDA if self.mba_lambda is None else float(self.mba_lambda)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dnn_hidden_units"] = list(self.dnn_hidden_units)
        data["att_hidden_size"] = list(self.att_hidden_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys are errors naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)
