"""Benchmark: model quality of dinrec's DIN next to DeepCTR-Torch's, over logs and seeds.

Each (log, seed, model) trains in its own worker process on the same arrays file (see
quality_data.py: ml-100k rating and next-item, the synthetic demo log, a local-activation
log), 1 intra-op thread, the common config below, and scores the eval rows after every
epoch. Reported per log: test (or val) AUC, GAUC (impression-weighted per-user AUC) and
logloss after every epoch, mean and standard deviation over the seeds, and the final epoch's
per-seed values. DeepCTR-Torch 0.3.0 runs from bench/.venv-deepctr-torch (created on first use
by compare_deepctr_torch.py's recipe).

`--split val` trains on each user's first 80% of training rows and scores the last 20%
(choose settings there); `--split test` trains on the whole training split and scores test
(report once). Not part of the tests.

Run:
    python bench/quality.py [--logs rating next-item synthetic local] [--seeds 1 2 3]
        [--split test] [--variants din base din-prelu ...] [--variant NAME=JSON]
        [--markdown F] [--json F] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from quality_data import EXTRA_LOGS, LOGS, build_log_arrays
from quality_stats import describe, paired_gauc_bootstrap

BENCH = Path(__file__).resolve().parent
# The common bench config (DeepCTR-Torch's DIN defaults for the towers).
CONFIG: dict[str, Any] = {
    "embedding_dim": 16, "att_hidden_size": [64, 16], "att_activation": "dice",
    "dnn_hidden_units": [256, 128], "dnn_activation": "relu", "batch_size": 256,
    "lr": 1e-3, "epochs": 5, "threads": 1,
}
PEER = "DeepCTR-Torch"
ENVS: dict[str, dict[str, str]] = {}
COMPILE: dict[str, dict[str, Any]] = {}
# dinrec models by name: (model class, DIN/EmbeddingMLP keyword arguments).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "din": ("DIN", {}),
    "base": ("EmbeddingMLP", {}),
    "din-prelu": ("DIN", {"att_activation": "prelu"}),
    "din-relu": ("DIN", {"att_activation": "relu"}),
    "din-mba": ("DIN", {"embedding_regularization": "mba"}),
}


def peer_python() -> str:
    sys.path.insert(0, str(BENCH))
    from compare_deepctr_torch import venv_python

    return venv_python()


def run_job(python: str, script: str, arrays: Path, job: dict[str, Any]) -> dict[str, Any]:
    """One worker run; returns its result with `scores` [epochs, n_eval]."""
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out = Path(tmp) / "job.json", Path(tmp) / "out.npz"
        job_path.write_text(json.dumps(job))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **job.get("env", {}))
        proc = subprocess.run([python, str(BENCH / script), str(arrays), str(job_path),
                               str(out)], env=env, text=True, capture_output=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise RuntimeError(f"{script} failed ({proc.returncode}) on {job['name']}")
        with np.load(out) as data:
            result: dict[str, Any] = json.loads(str(data["result"]))
            result["scores"] = data["scores"]
    return result


def epoch_metrics(scores: np.ndarray, arrays: Path, split: str) -> list[dict[str, float]]:
    """AUC, GAUC (grouped by user_key) and logloss of each epoch's scores [E, n]."""
    from dinrec.metrics import auc, gauc, logloss

    with np.load(arrays) as data:
        y, users = data[f"{split}_label"], data[f"{split}_user_key"]
    return [{"auc": auc(y, p), "gauc": gauc(y, p, users), "logloss": logloss(y, p)}
            for p in scores]


def run_and_score(job: tuple[str, str, str, dict[str, Any]], arrays: Path, log: str,
                  split: str) -> dict[str, Any]:
    """Run one job, score each epoch (and the batch-statistics row, when asked), print it."""
    name, python, script, body = job
    res = run_job(python, script, arrays, body)
    scores = res.pop("scores")
    if res.get("batch_stats_row"):
        res["batch_stats"] = epoch_metrics(scores[-1:], arrays, split)[0]
        scores = scores[:-1]
    res["epochs"] = epoch_metrics(scores, arrays, split)
    res["seed"] = body["config"]["seed"]
    res["final_scores"] = scores[-1]  # [n_eval], for the paired bootstrap (not in --json)
    last = res["epochs"][-1]
    extra = ""
    if "batch_stats" in res:
        extra = f" | with batch statistics: GAUC {res['batch_stats']['gauc']:.4f}"
    print(f"{log} {name} seed {res['seed']}: GAUC {last['gauc']:.4f} AUC {last['auc']:.4f} "
          f"logloss {last['logloss']:.4f} | GAUC by epoch "
          + " ".join(f"{e['gauc']:.4f}" for e in res["epochs"]) + extra, flush=True)
    return res


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / sd over seeds of every epoch's metrics, and the final epoch per seed."""
    curves = {k: np.array([[e[k] for e in r["epochs"]] for r in runs])
              for k in ("auc", "gauc", "logloss")}  # each [seeds, epochs]
    return {
        "mean": {k: v.mean(axis=0).tolist() for k, v in curves.items()},
        "sd": {k: v.std(axis=0, ddof=1).tolist() if len(runs) > 1 else [0.0] * v.shape[1]
               for k, v in curves.items()},
        "final": {k: v[:, -1].tolist() for k, v in curves.items()},
        "seconds": float(np.median([np.median(r["epoch_seconds"]) for r in runs])),
        "batch_stats": ({k: float(np.mean([r["batch_stats"][k] for r in runs]))
                         for k in ("auc", "gauc", "logloss")}
                        if all("batch_stats" in r for r in runs) else None),
    }


def markdown(log: str, split: str, table: dict[str, dict[str, Any]], spec: dict[str, Any]) -> str:
    seeds = len(next(iter(table.values()))["final"]["gauc"])
    rows = spec["rows"]
    trained = rows["fit" if split == "val" else "train"]
    head = f"**{log}** ({split}: {rows[split]} rows scored, {trained} trained on"
    if "oracle_test_auc" in spec:
        head += f"; oracle test AUC {spec['oracle_test_auc']:.4f}"
    lines = [head + f"; mean ± sd over {seeds} seeds, final epoch)", "",
             "| model | GAUC | AUC | logloss | GAUC per seed | GAUC by epoch (mean) "
             "| s/epoch |", "|---|---|---|---|---|---|---:|"]
    for name, s in table.items():
        m, sd = s["mean"], s["sd"]
        lines.append(
            f"| {name} | {m['gauc'][-1]:.4f} ± {sd['gauc'][-1]:.4f} "
            f"| {m['auc'][-1]:.4f} ± {sd['auc'][-1]:.4f} "
            f"| {m['logloss'][-1]:.4f} ± {sd['logloss'][-1]:.4f} "
            f"| {' '.join(f'{v:.4f}' for v in s['final']['gauc'])} "
            f"| {' '.join(f'{v:.4f}' for v in m['gauc'])} | {s['seconds']:.1f} |")
        if s["batch_stats"] is not None:
            b = s["batch_stats"]
            lines.append(f"| {name}, Dice with eval-batch statistics | {b['gauc']:.4f} "
                         f"| {b['auc']:.4f} | {b['logloss']:.4f} | | | |")
    return "\n".join(lines)


def peer_differences(runs: dict[str, list[dict[str, Any]]], arrays: Path,
                     split: str) -> list[str]:
    """Each dinrec model's seed-mean GAUC minus the peer's, with a paired bootstrap interval
    over the eval split's users (quality_stats.py): how much of a gap the split can resolve."""
    with np.load(arrays) as data:
        y, users = data[f"{split}_label"], data[f"{split}_user_key"]
    peer = np.stack([r["final_scores"] for r in runs[PEER]])
    return [describe(name, PEER, paired_gauc_bootstrap(
                y, users, np.stack([r["final_scores"] for r in rs]), peer))
            for name, rs in runs.items() if name != PEER]


def parse_variants(names: list[str], custom: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; valid: {sorted(VARIANTS)}")
        out[name] = VARIANTS[name]
    for item in custom:
        name, _, text = item.partition("=")
        options = json.loads(text)
        model = options.pop("model", "DIN")
        out[name] = (model, options)
        if "env" in options:  # environment variables for this variant's worker
            ENVS[name] = options.pop("env")
        if "compile" in options:  # model.compile keywords, e.g. {"ema_momentum": null}
            COMPILE[name] = options.pop("compile")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=LOGS + EXTRA_LOGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    parser.add_argument("--variants", nargs="*", default=["din"])
    parser.add_argument("--variant", action="append", default=[],
                        help='NAME=JSON of DIN kwargs, e.g. relu=\'{"att_activation": "relu"}\' '
                        '("model": "EmbeddingMLP" for the Base Model; "compile": {...} for '
                        'model.compile keywords, e.g. {"ema_momentum": null})')
    parser.add_argument("--batch-stats", action="store_true",
                        help="also score the final model with Dice's eval-batch statistics")
    parser.add_argument("--no-peer", action="store_true", help="skip DeepCTR-Torch")
    parser.add_argument("--peer-options", default="{}", help="JSON: extra DeepCTR-Torch DIN kwargs")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes at once")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    CONFIG["epochs"] = args.epochs
    variants = parse_variants(args.variants, args.variant)
    peer = None if args.no_peer else peer_python()
    train_split, eval_split = ("fit", "val") if args.split == "val" else ("train", "test")
    print(f"config: {json.dumps(CONFIG)}; train on {train_split}, score {eval_split}", flush=True)
    blocks, everything = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for log in args.logs:
            arrays = Path(tmp) / f"{log}.npz"
            spec = build_log_arrays(log, arrays, CONFIG["embedding_dim"])
            jobs = []
            for seed in args.seeds:
                cfg = {**CONFIG, "seed": seed}
                base = {"spec": spec, "config": cfg, "train": train_split, "eval": eval_split}
                for name, (model, options) in variants.items():
                    jobs.append((name, sys.executable, "quality_run_dinrec.py",
                                 {**base, "name": name, "model": model, "options": options,
                                  "batch_stats": args.batch_stats,
                                  "compile": COMPILE.get(name, {}),
                                  "env": ENVS.get(name, {})}))
                if peer is not None:
                    jobs.append((PEER, peer, "quality_run_deepctr_torch.py",
                                 {**base, "name": PEER, "options": json.loads(args.peer_options)}))
            with ThreadPoolExecutor(args.jobs) as pool:
                results = list(pool.map(
                    lambda j, a=arrays, g=log: run_and_score(j, a, g, eval_split), jobs))
            runs: dict[str, list[dict[str, Any]]] = {}
            for (name, *_), res in zip(jobs, results, strict=True):
                runs.setdefault(name, []).append(res)
            table = {name: summarize(r) for name, r in runs.items()}
            block = markdown(log, eval_split, table, spec)
            if PEER in runs:
                block += "\n\n" + "\n".join(
                    "- " + line for line in peer_differences(runs, arrays, eval_split))
            for r in (r for rs in runs.values() for r in rs):
                del r["final_scores"]
            print("\n" + block + "\n", flush=True)
            blocks.append(block)
            everything[log] = {"spec": spec, "runs": runs, "summary": table}
    if args.markdown is not None:
        args.markdown.write_text("\n\n".join(blocks) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
