"""A small synthetic DIN bundle with raw-id vocabularies, for the serving tests and the
serving benchmarks (bench/serve_latency.py, bench/serve_phases.py); not part of the package.

Raw ids look like "u17", "i2048", "c5"; item i belongs to category i % n_categories. The
weights are random (not trained) but spread out, so scores differ from one candidate to the
next and a parity check compares something.

Example:
    >>> from tests.support.demo_bundle import build_demo_bundle              # doctest: +SKIP
    >>> path = build_demo_bundle(tmp_path / "bundle")                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dinrec.data.vocabulary import Vocabularies
from dinrec.feature_column import FeatureColumn, SparseFeat, VarLenSparseFeat


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of the demo model.

    Args:
        n_users, n_items, n_categories: raw ids u0.., i0.., c0...
        maxlen: history length T.
        embedding_dim: width of every table.
        genders: raw values of the one profile feature, "gender".
        seed: weights and ids.
    """

    n_users: int = 100
    n_items: int = 1000
    n_categories: int = 20
    maxlen: int = 50
    embedding_dim: int = 16
    genders: tuple[str, ...] = ("f", "m", "x")
    seed: int = 0

    def item(self, i: int) -> str:
        return f"i{i}"

    def category_of(self, item: str) -> str:
        """The raw category of a raw demo item id."""
        return f"c{int(item[1:]) % self.n_categories}"


def demo_vocab(spec: DemoSpec) -> Vocabularies:
    """Vocabularies of every raw demo id (fitted in id order)."""
    return Vocabularies.fit({
        "user_id": np.array([f"u{i}" for i in range(spec.n_users)]),
        "gender": np.array(list(spec.genders)),
        "item_id": np.array([spec.item(i) for i in range(spec.n_items)]),
        "cate_id": np.array([f"c{i}" for i in range(spec.n_categories)]),
    })


def demo_columns(spec: DemoSpec, vocabs: Vocabularies) -> list[FeatureColumn]:
    """DIN columns over the demo vocabularies (history tables shared with the candidate)."""
    sizes = vocabs.sizes()
    dim = spec.embedding_dim
    return [
        SparseFeat("user_id", sizes["user_id"], dim),
        SparseFeat("gender", sizes["gender"], 4),
        SparseFeat("item_id", sizes["item_id"], dim),
        SparseFeat("cate_id", sizes["cate_id"], dim),
        VarLenSparseFeat(
            SparseFeat("hist_item_id", sizes["item_id"], dim, embedding_name="item_id"),
            spec.maxlen,
        ),
        VarLenSparseFeat(
            SparseFeat("hist_cate_id", sizes["cate_id"], dim, embedding_name="cate_id"),
            spec.maxlen,
        ),
    ]


def spread_weights(model: torch.nn.Module, seed: int = 0, scale: float = 1.0) -> None:
    """Give an untrained model varied weights and Dice / BatchNorm statistics, in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            fan_in = param.shape[-1] if param.dim() > 1 else 1
            std = scale * (0.5 if "embeddings" in name else 1.0 / fan_in**0.5)
            param.copy_(torch.randn(param.shape, generator=gen) * std)
        for module in model.modules():
            mean = getattr(module, "running_mean", None)
            var = getattr(module, "running_var", None)
            if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor):
                mean.copy_(torch.randn(mean.shape, generator=gen) * 0.1)
                var.copy_(torch.rand(var.shape, generator=gen) + 0.5)


def build_demo_bundle(
    path: str | os.PathLike[str], spec: DemoSpec | None = None, *, version: str | None = None
) -> Path:
    """Write a demo DIN bundle with vocab.json at `path` and return it.

    Args:
        path: bundle directory (replaced if present).
        spec: sizes (default DemoSpec()).
        version: a label stored as the manifest's extra "version" (GET /v1/model's
            "label"); the served model version is always the content digest.
    """
    from dinrec.bundle import save_model
    from dinrec.models import DIN

    spec = spec or DemoSpec()
    vocabs = demo_vocab(spec)
    model = DIN(demo_columns(spec, vocabs), ["item_id", "cate_id"], seed=spec.seed)
    spread_weights(model, spec.seed)
    extra = {"version": version} if version else None
    return save_model(model.eval(), path, vocab=vocabs.to_json_dict(), extra=extra)


def demo_history(spec: DemoSpec, user: int, length: int | None = None) -> list[tuple[str, str]]:
    """A user's (item, category) behaviors, oldest first: `length` items (default maxlen)."""
    rng = np.random.default_rng(spec.seed * 100_003 + user)
    items = rng.integers(0, spec.n_items, size=spec.maxlen if length is None else length)
    return [(spec.item(int(i)), spec.category_of(spec.item(int(i)))) for i in items]
