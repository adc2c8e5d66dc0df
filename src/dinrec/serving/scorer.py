"""Scorer: one loaded bundle scoring raw requests, on torch or ONNX Runtime (no HTTP here).

The Scorer is immutable once loaded, so a server swaps in a new one on reload by replacing
one reference: a request holds the Scorer it started with to the end.

Threads: torch runs with however many intra-op threads the process set; `dinrec serve` sets
1 per worker process (see docs/serving.md: with 2 threads a forward stalled ~170 ms whenever
another process held a core; with 1 it stayed steady).

Example:
    >>> scorer = Scorer.load("din_bundle")                                   # doctest: +SKIP
    >>> scorer.rank("u1", ["i1", "i2"], ["c1", None], history=[("i9", "c1")])  # doctest: +SKIP
    RankScores(probabilities=array([0.61, 0.42], dtype=float32), defaulted=())
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dinrec.bundle import bundle_version, load_vocab, read_manifest
from dinrec.data.vocabulary import META_KEY, OOV_ID, PAD_ID, Vocabularies, Vocabulary
from dinrec.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from dinrec.models import load_model
from dinrec.models.network import InterestNetwork
from dinrec.serving.behavior_feeds import BehaviorFeeds
from dinrec.serving.broadcast import BroadcastForward
from dinrec.serving.encoding import Arrays, FeatureEncoder, UserFeatures

BACKENDS = ("torch", "onnx")
# Files whose bytes make a model version: same files, same version.


class NonFiniteModelError(ValueError):
    """A bundle whose model scores a probe batch as NaN or inf."""


class Backend(Protocol):
    """Runs the broadcast forward pass: user arrays [U, ...] (U = 1 or C) and candidate
    arrays [C] -> logits [C] float32."""

    name: str

    def logits(self, user: Arrays, candidates: Arrays) -> np.ndarray: ...


class TorchBackend:
    """The broadcast forward pass in eager torch, under inference_mode."""

    name = "torch"

    def __init__(self, model: InterestNetwork) -> None:
        self.forward = BroadcastForward(model).eval()

    def logits(self, user: Arrays, candidates: Arrays) -> np.ndarray:
        with torch.inference_mode():
            u = {k: torch.from_numpy(v) for k, v in user.items()}
            c = {k: torch.from_numpy(v) for k, v in candidates.items()}
            return self.forward(u, c).numpy()


def bundle_label(manifest: dict[str, Any]) -> str | None:
    """The human label a bundle was saved with (manifest extra "version"), if any."""
    given = manifest.get("extra", {}).get("version")
    return None if given in (None, "") else str(given)


def read_vocabularies(path: str | Path) -> Vocabularies | None:
    """The bundle's vocab.json as Vocabularies (a plain {feature: {raw: id}} JSON works too)."""
    data = load_vocab(path)
    if data is None:
        return None
    try:
        if META_KEY in data:
            return Vocabularies.from_json_dict(data)
        return Vocabularies({
            name: Vocabulary(name, {str(k): int(v) for k, v in mapping.items()})
            for name, mapping in data.items()
        })
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise ValueError(f"{path}/vocab.json is not a usable vocabulary: {err}") from None


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, without overflow for large |x|."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


@dataclass(frozen=True)
class RankScores:
    """Probabilities [C] in candidate order, and the profile inputs that were defaulted."""

    probabilities: np.ndarray
    defaulted: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleInfo:
    """Where a Scorer came from."""

    path: str
    version: str
    manifest: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)


class Scorer:
    """Scores raw requests with one model.

    Args:
        model: the InterestNetwork, in eval mode.
        vocabs: its vocabularies, or None (ids are taken as encoded ints).
        info: the bundle's path, version and manifest.
        backend: the Backend that runs the forward pass (default: torch).
        user_feature: the SparseFeat fed with the request's user id (default "user_id"
            when the model has it).
    """

    def __init__(
        self,
        model: InterestNetwork,
        vocabs: Vocabularies | None,
        info: BundleInfo,
        backend: Backend | None = None,
        user_feature: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.vocabs = vocabs
        self.info = info
        self.encoder = FeatureEncoder(model.schema, vocabs, user_feature)
        # Which stored behavior types feed each history (the manifest's mapping, if any).
        self.feeds = BehaviorFeeds.of(model.schema, info.manifest)
        self.backend = backend if backend is not None else TorchBackend(model)

    @classmethod
    def load(
        cls, path: str | Path, *, backend: str = "torch", user_feature: str | None = None
    ) -> Scorer:
        """Load a bundle (JSON + safetensors, plus onnx/ for the onnx backend) and warm up."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
        root = Path(path)
        model = load_model(root)
        info = BundleInfo(str(root), bundle_version(root), read_manifest(root))
        runner: Backend
        if backend == "onnx":
            from dinrec.serving.onnx_export import OnnxBackend

            runner = OnnxBackend(root, info.version)
        else:
            runner = TorchBackend(model)
        scorer = cls(model, read_vocabularies(root), info, runner, user_feature)
        scorer.warm_up()
        return scorer

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def maxlen(self) -> int:
        """History length the model reads (0 without history features)."""
        return self.encoder.maxlen

    def rank(
        self,
        user_id: str | int,
        candidates: Sequence[Any],
        categories: Sequence[Any],
        history: Sequence[tuple[Any, ...]] = (),
        profile: Mapping[str, Any] | None = None,
        groups: Mapping[str, Sequence[tuple[Any, ...]]] | None = None,
        now: float | None = None,
    ) -> RankScores:
        """Click probabilities of `candidates` for one user, in candidate order.

        Args:
            user_id: the raw user id.
            candidates: [C] raw item ids.
            categories: [C] raw category per candidate (None: unknown).
            history: (item, category), (item, category, timestamp) or (item, category,
                timestamp, weight) behaviors of history_feature_list's history, oldest
                first; the last maxlen are used (a weighted history reads the weights, 1.0
                where a behavior has none).
            profile: raw profile values by input name; absent ones are defaulted.
            groups: the same per named history group (absent: none).
            now: the request's time in seconds, which time gaps are measured to (default:
                the clock).
        """
        user = self.encoder.user(user_id, profile or {}, history, groups)
        return self.rank_encoded(user, self.encoder.items(candidates, categories), now)

    def rank_encoded(
        self, user: UserFeatures, items: Arrays, now: float | None = None
    ) -> RankScores:
        """rank() from inputs encoded already (FeatureEncoder.user / .items)."""
        arrays = user.at(time.time() if now is None else now)
        return RankScores(sigmoid(self.backend.logits(arrays, items)), user.defaulted)

    def score(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Click probabilities [N] of rows that give every feature (history included)."""
        user, items = self.encoder.rows(rows)
        return sigmoid(self.backend.logits(user, items))

    def warm_up(self) -> None:
        """Score a probe batch, so the first request does not pay for lazy setup, and refuse
        a model whose scores are not finite (NaN / inf weights): served, it would answer
        every rank call with a 500 until the next reload.

        Raises:
            NonFiniteModelError: the probe's scores are not all finite.
        """
        # Id 0 is valid with or without a vocabulary (a raw "0" is simply unknown); one
        # behavior, so the attention unit runs too; candidates padding and unknown.
        probe = [(0, 0, 0.0)]
        groups = {g.name: probe for g in self.encoder.groups if g.name}
        user = self.encoder.user(0, {}, probe if self.encoder.history else [], groups)
        items = {name: np.array([PAD_ID, OOV_ID], dtype=np.int64)
                 for name in self.encoder.candidates}
        logits = self.backend.logits(user.at(0.0), items)
        if not np.isfinite(logits).all():
            raise NonFiniteModelError(
                f"model {self.version} gives non-finite scores ({logits.tolist()}) on a probe "
                "batch: its weights hold NaN or inf; refusing to serve it"
            )

    def describe(self) -> dict[str, Any]:
        """Bundle metadata and features, for GET /v1/model."""
        schema = self.model.schema
        features = []
        for col in schema.columns:
            entry: dict[str, Any] = {"name": col.name, "type": type(col).__name__}
            if isinstance(col, (SparseFeat, VarLenSparseFeat)):
                entry.update(
                    vocabulary_size=col.vocabulary_size, embedding_dim=schema.dim(col),
                    embedding_name=col.table, raw_ids=self.encoder.codecs[col.name].vocab
                    is not None,
                )
            if isinstance(col, VarLenSparseFeat):
                entry.update(maxlen=col.maxlen, length_name=col.length_name)
            if isinstance(col, DenseFeat):
                entry.update(dimension=col.dimension)
            features.append(entry)
        enc = self.encoder
        return {
            "version": self.version,
            "label": bundle_label(self.info.manifest),
            "backend": self.backend.name,
            "model_class": self.info.manifest.get("model_class"),
            "manifest": self.info.manifest,
            "loaded_at": self.info.loaded_at,
            "history_maxlen": self.maxlen,
            "roles": {
                "user": enc.user_feature, "candidate": enc.candidates[:1],
                "candidate_attributes": enc.candidates[1:], "history": list(enc.history),
                # Each history's sequences and the stored behavior types feeding it.
                "histories": {
                    f.group.name: {"inputs": [c.name for c in f.group.columns]
                                   + [c.name for c in f.group.side],
                                   "maxlen": f.group.maxlen, "behaviors": list(f.types)}
                    for f in self.feeds.feeds},
                "profile": list(enc.profile_features),
            },
            "features": features,
            "config": self.model.config.to_dict(),
        }
