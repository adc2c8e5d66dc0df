"""The demo job: the paper's ablation on the built-in synthetic log, with a table and plots.

generate a click log (dinrec.data.synthetic, no download) -> one click-log dataset ->
train the Base Model, DIN, DIN+Dice and DIN+MBA+Dice on it (one run directory each) ->
print AUC, GAUC, logloss and RelaImpr against the Base Model -> training curves for all
models and an attention heatmap of one user for two candidates from different categories.

The synthetic click depends on the single most similar earlier click of the user, which
attention can pick out and sum pooling blurs, so DIN beats the Base Model clearly even after
one or two epochs on a small log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dinrec.errors import OutputExistsError
from dinrec.experiment.ablation import DEMO_ABLATION, VARIANTS, variant_config, variants
from dinrec.experiment.config import config_from_dict
from dinrec.experiment.outputs import remove_entries
from dinrec.experiment.runner import BUNDLE_DIR, RunResult, run_experiment

ATTENTION_FILE = "attention.png"
ATTENTION_TABLE_FILE = "attention.txt"
CURVES_FILE = "curves.png"
TABLE_FILE = "results.md"


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the synthetic world, the networks and the training."""

    n_users: int
    n_items: int
    n_categories: int
    mean_impressions: float
    maxlen: int
    epochs: int
    embedding_dim: int = 16
    dnn_hidden_units: tuple[int, ...] = (128, 64)
    att_hidden_size: tuple[int, ...] = (64, 16)
    batch_size: int = 256
    learning_rate: float = 1e-3


# "default" trains the four models in about 30 s on 2 cores (measured; see
# docs/results.md); "tiny" is for tests and smoke runs (seconds, the numbers mean little).
DEMO_SIZES: dict[str, DemoSize] = {
    "tiny": DemoSize(n_users=120, n_items=240, n_categories=8, mean_impressions=30, maxlen=20,
                     epochs=1, embedding_dim=8, dnn_hidden_units=(32, 16),
                     att_hidden_size=(16, 8), batch_size=128, learning_rate=3e-3),
    "small": DemoSize(n_users=600, n_items=1200, n_categories=20, mean_impressions=60,
                      maxlen=30, epochs=2),
    "default": DemoSize(n_users=2000, n_items=4000, n_categories=40, mean_impressions=75,
                        maxlen=50, epochs=2),
}


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the runs, the table and the files written."""

    out_dir: Path
    results: list[RunResult]
    table: str
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def demo_raw_config(size: DemoSize, seed: int, threads: int) -> dict[str, Any]:
    """The shared experiment config of the demo's runs (before a variant is applied)."""
    return {
        "model": {"embedding_dim": size.embedding_dim,
                  "dnn_hidden_units": list(size.dnn_hidden_units),
                  "att_hidden_size": list(size.att_hidden_size)},
        "training": {"epochs": size.epochs, "batch_size": size.batch_size,
                     "learning_rate": size.learning_rate, "seed": seed,
                     "validation_fraction": 0.1, "monitor": "val_gauc",
                     "patience": 1, "num_threads": threads},
        "output": {"checkpoint_every": 0, "plots": False},
    }


def run_demo(
    out_dir: str | Path,
    size: DemoSize,
    *,
    seed: int = 0,
    threads: int = 1,
    slugs: Sequence[str] = DEMO_ABLATION,
    overwrite: bool = False,
    verbose: int = 1,
    echo: TextIO | None = sys.stdout,
) -> DemoResult:
    """Build the synthetic dataset, train each variant, write the table and the plots.

    Args:
        out_dir: the demo's directory (data/, one run per model, results.md, PNGs).
        size: DEMO_SIZES[...] or a custom DemoSize.
        seed: seeds the synthetic world and every run.
        threads: torch intra-op threads per run.
        slugs: which variants to train (ablation.VARIANTS keys); the first Base Model is
            the RelaImpr baseline.
        overwrite: replace a demo already in out_dir (the files a demo writes, nothing
            else) instead of refusing.
        verbose: 1 shows progress bars and epoch lines.
        echo: where progress lines go (None: nowhere).
    """
    from dinrec.data.build import build_dataset
    from dinrec.experiment.report import markdown_table

    start = time.perf_counter()
    chosen = variants(slugs)  # an unknown name fails here, before minutes of data building
    root = Path(out_dir).resolve()
    entries = demo_entries(chosen)
    if root.is_dir() and any((root / name).exists() for name in entries):
        if not overwrite:
            raise OutputExistsError(f"demo directory {root} already holds a demo; pass "
                                    "{overwrite} to replace it, or choose another {out}",
                                    out=("out_dir", "--out"))
        remove_entries(root, entries)
    root.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if echo is not None:
            print(message, file=echo, flush=True)

    data_dir = root / "data"
    if not (data_dir / "dataset.json").is_file():
        summary = build_dataset(
            "synthetic", None, "click-log", data_dir, maxlen=size.maxlen, seed=seed,
            reader_options={"n_users": size.n_users, "n_items": size.n_items,
                            "n_categories": size.n_categories,
                            "mean_impressions": size.mean_impressions},
            progress=verbose > 0)
        say(f"synthetic click log: {summary.events} impressions, {summary.users} users, "
            f"{summary.items} items; samples {summary.samples}")
    raw = demo_raw_config(size, seed, threads)
    raw["data"] = {"dataset": str(data_dir)}
    results: list[RunResult] = []
    for i, variant in enumerate(chosen):
        say(f"[{i + 1}/{len(chosen)}] {variant.label}")
        config = config_from_dict(variant_config(raw, variant))
        run_dir = root / variant.slug
        results.append(run_experiment(config, run_dir, verbose=verbose, echo=echo))
    table = markdown_table(results)
    files = [root / TABLE_FILE]
    (root / TABLE_FILE).write_text(table + "\n", encoding="utf-8")
    files += _plots(root, chosen, results)
    return DemoResult(root, results, table, files, time.perf_counter() - start)


def demo_entries(chosen: Sequence[Any]) -> list[str]:
    """What a demo writes into its directory (and overwrite=True removes)."""
    slugs = {v.slug for v in chosen} | set(VARIANTS)  # an earlier demo may have run others
    return ["data", *sorted(slugs), TABLE_FILE, CURVES_FILE, ATTENTION_FILE,
            ATTENTION_TABLE_FILE]


def _plots(root: Path, chosen: Sequence[Any], results: Sequence[RunResult]) -> list[Path]:
    """Training curves of every run and the attention heatmap of the last DIN variant."""
    from dinrec.bundle import load_vocab
    from dinrec.data.dataset import load_dataset
    from dinrec.experiment.explain import explain_user, pick_demo_case
    from dinrec.experiment.plots import plot_training_curves
    from dinrec.experiment.recorder import read_records
    from dinrec.models import load_model

    files = [plot_training_curves(
        {v.label: read_records(r.run_dir) for v, r in zip(chosen, results, strict=True)},
        root / CURVES_FILE)]
    din = [(v, r) for v, r in zip(chosen, results, strict=True) if v.model["model"] == "DIN"]
    if not din:
        return files
    variant, result = din[-1]
    bundle = result.run_dir / BUNDLE_DIR
    dataset = load_dataset(root / "data")
    user, candidates = pick_demo_case(dataset)
    vocab = load_vocab(bundle)
    assert vocab is not None
    ex = explain_user(load_model(bundle), vocab, dataset, user, candidates)
    (root / ATTENTION_TABLE_FILE).write_text(ex.format_table() + "\n", encoding="utf-8")
    files.append(ex.save_heatmap(
        root / ATTENTION_FILE,
        f"{variant.label}: attention over user {user}'s behaviors for two candidates"))
    return files
