"""Benchmark: dinrec's DIN vs DeepCTR-Torch 0.3.0's DIN on the same arrays, same run.

DeepCTR-Torch runs in its own virtualenv (bench/.venv-deepctr-torch, created on first use:
torch pinned by ../constraints.txt, plus `requests`, which deepctr_torch imports without
declaring it). Both frameworks train in separate worker processes on one .npz of arrays with
ml100k_data.CONFIG, once per seed (default 1024, 1, 2: test GAUC moves by ~0.005 between
seeds, more than between the frameworks), alternating which framework goes first; speeds and
GAUC are the medians over the seeds' runs. Speeds are wall-clock samples/s (the median over
epochs 2..5) and samples per CPU-second, which the load of a shared machine disturbs less.

With --with-tf, DeepCTR 0.9.4's TensorFlow DIN runs too (run_deepctr_tf.py), in the same
order rotation on the same arrays and config, in its own virtualenv (bench/.venv-deepctr-tf,
created on first use: TF_PACKAGES, tensorflow + tf-keras because deepctr needs Keras 2, which
the worker gets with TF_USE_LEGACY_KERAS=1), and each dinrec variant's ratios to it are
printed from the same run. Its threads are pinned like the others' (1 intra-op, 1 inter-op);
the tf.data pipeline Keras builds for fit/predict keeps its own default threads, which the
per-CPU-second numbers account for. Without --with-tf, DeepCTR's TensorFlow DIN is not run
and its rating-protocol training speed measured earlier on this machine is printed as a
reference. Not part of the tests.

Run:
    nice python bench/compare_deepctr_torch.py [--protocols rating next-item] [--with-tf]
        [--markdown F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ml100k_data import CONFIG, PROTOCOLS, ROOT, build_arrays, median, run_worker, summarize
from throughput import HEADER, fmt_row

VENV = Path(__file__).resolve().parent / ".venv-deepctr-torch"
PACKAGES = ["torch==2.13.0", "deepctr-torch==0.3.0", "requests", "numpy"]
TORCH_NAME = "DeepCTR-Torch 0.3.0"
# DeepCTR (TensorFlow) 0.9.4: it imports tensorflow.keras (Keras 2), which TF >= 2.16 gives
# only through tf-keras with TF_USE_LEGACY_KERAS=1. `tensorflow` on Linux x86-64 is the CPU
# build (no CUDA packages without the [and-cuda] extra); tensorflow-cpu would install beside
# it, because tf-keras requires `tensorflow`, so it is not used. numpy/protobuf/h5py: the
# versions pip resolved for these pins when this recipe was made (TF 2.21 takes numpy 2).
TF_VENV = Path(__file__).resolve().parent / ".venv-deepctr-tf"
TF_PACKAGES = ["tensorflow==2.21.0", "tf-keras==2.21.0", "deepctr==0.9.4", "numpy==2.4.6",
               "protobuf==7.36.2", "h5py==3.14.0"]
TF_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
          "TF_NUM_INTRAOP_THREADS": str(CONFIG["threads"]), "TF_NUM_INTEROP_THREADS": "1"}
TF_NAME = "DeepCTR-TF 0.9.4"
# dinrec's speed options per variant (run_dinrec.py flags).
VARIANTS = {
    "eager": [],
    "compiled": ["--compile-dense"],
    "bf16": ["--bf16"],
    "compiled+bf16": ["--compile-dense", "--bf16"],
    "torch-ops": ["--torch-ops"],  # eager without the native kernels (A/B of accuracy, speed)
}
# DeepCTR (TensorFlow) DIN, ml100k-rating, same config, 1 thread, measured on this machine.
DEEPCTR_TF_TRAIN_SPS = 8_174.0


def make_venv(venv: Path, packages: list[str], check: str,
              env: dict[str, str] | None = None) -> str:
    """The python of `venv`, creating it with `packages` when missing.

    `check` is a python statement run in the new venv (under `env`) to prove the install
    works. A failed creation removes the half-made venv, so the next run tries again, and
    raises with the recipe in the message.
    """
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    print(f"creating {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c",
                        str(ROOT / "constraints.txt"), *packages], check=True)
        subprocess.run([str(python), "-c", check], check=True, env={**os.environ, **(env or {})})
    except BaseException as exc:
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(
            f"could not create {venv} (pip install {' '.join(packages)}; then `{check}`): "
            f"{exc}") from exc
    return str(python)


def venv_python() -> str:
    """The DeepCTR-Torch venv's python, creating the venv when missing."""
    return make_venv(VENV, PACKAGES, "import deepctr_torch.models")


def tf_venv_python() -> str:
    """The DeepCTR (TensorFlow) venv's python, creating the venv when missing."""
    return make_venv(TF_VENV, TF_PACKAGES, "import deepctr.models, tf_keras", TF_ENV)


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: median([r[k] for r in rows]) for k in rows[0]}


def report_ratios(protocol: str, name: str, a: dict[str, float], b: dict[str, float],
                  other: str = "DeepCTR-Torch", reference: bool = True) -> None:
    """`name`'s speed ratios, RSS and GAUC against `other` (medians over seeds). With
    `reference` (no measured TF run), the rating protocol also gets the ratio to the old
    DeepCTR (TF) reference number."""
    print(f"{protocol} {name} / {other}: train x{a['train_sps'] / b['train_sps']:.2f} "
          f"(per CPU-s x{a['train_sps_cpu'] / b['train_sps_cpu']:.2f}), "
          f"infer x{a['infer_sps'] / b['infer_sps']:.2f} "
          f"(per CPU-s x{a['infer_sps_cpu'] / b['infer_sps_cpu']:.2f}), "
          f"RSS {a['rss_mib']:.0f} vs {b['rss_mib']:.0f} MiB, "
          f"GAUC {a['gauc']:.4f} vs {b['gauc']:.4f} ({a['gauc'] - b['gauc']:+.4f})", flush=True)
    if reference and protocol == "rating":
        print(f"{protocol} {name}: train vs DeepCTR (TF) reference "
              f"{DEEPCTR_TF_TRAIN_SPS:,.0f}/s: x{a['train_sps'] / DEEPCTR_TF_TRAIN_SPS:.2f}",
              flush=True)


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| protocol | framework | train samples/s | train samples/CPU-s "
        "| infer samples/s (batch 4096) | infer samples/CPU-s | peak RSS MiB | test AUC "
        "| test GAUC | GAUC per seed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['protocol']} | {r['framework']} | {r['train_sps']:,.0f} | "
            f"{r['train_sps_cpu']:,.0f} | {r['infer_sps']:,.0f} | {r['infer_sps_cpu']:,.0f} | "
            f"{r['rss_mib']:,.0f} | {r['auc']:.4f} | {r['gauc']:.4f} | {r['gauc_seeds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    parser.add_argument("--options", default="{}", help="JSON: extra dinrec DIN kwargs")
    parser.add_argument("--variants", nargs="+", default=["eager", "compiled+bf16"],
                        choices=list(VARIANTS),
                        help="dinrec runs: eager (the defaults), compiled (compile_dense()), "
                        "bf16 (attention_bf16()), compiled+bf16 (both)")
    parser.add_argument("--baseline-src", help="also run the dinrec under this src dir, with "
                        "the first seed (`git archive <commit> src | tar -x -C DIR`, then DIR/src)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1024, 1, 2],
                        help="model seeds; GAUC moves by ~0.005 between seeds on ml100k, so "
                        "accuracy is compared on the median over seeds")
    parser.add_argument("--with-tf", action="store_true",
                        help="also run DeepCTR 0.9.4's TensorFlow DIN (bench/.venv-deepctr-tf, "
                        "created on first use) and print the ratios to it from this run")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown here")
    parser.add_argument("--json", type=Path, help="write every run as JSON here")
    args = parser.parse_args(argv)
    CONFIG["epochs"] = args.epochs
    other = venv_python()
    tf_python = tf_venv_python() if args.with_tf else None
    variants: list[tuple[str, str | None, list[str]]] = [
        (f"dinrec {v}", None, ["--options", args.options, *VARIANTS[v]]) for v in args.variants
    ]
    baseline = ("dinrec baseline", args.baseline_src, []) if args.baseline_src else None
    table: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    print(f"config: {json.dumps(CONFIG)}")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in args.protocols:
            arrays = Path(tmp) / f"{protocol}.npz"
            spec = build_arrays(protocol, arrays)
            rows: dict[str, list[dict[str, float]]] = {}
            for i, seed in enumerate(args.seeds):
                CONFIG["seed"] = seed
                # Alternate who goes first, so drift in the machine's load favours no one.
                # The baseline (slow) runs with the first seed only.
                first = [baseline] if baseline is not None and i == 0 else []
                order = [*first, *variants, (TORCH_NAME, "", [])]
                if tf_python is not None:
                    order.append((TF_NAME, "", []))
                for name, src, extra in order if i % 2 == 0 else order[::-1]:
                    if name.startswith("dinrec"):
                        res = run_worker(sys.executable, "run_dinrec.py", arrays, spec, extra,
                                         src)
                    elif name == TF_NAME:
                        assert tf_python is not None
                        res = run_worker(tf_python, "run_deepctr_tf.py", arrays, spec,
                                         env=TF_ENV)
                    else:
                        res = run_worker(other, "run_deepctr_torch.py", arrays, spec)
                    row = summarize(res, arrays)
                    rows.setdefault(name, []).append(row)
                    print(fmt_row(protocol, name, row) + f"  seed {seed}", flush=True)
                    runs.append({"protocol": protocol, "framework": name, "seed": seed, **row,
                                 "epoch_samples_per_s": res["epoch_samples_per_s"],
                                 "epoch_samples_per_cpu_s": res["epoch_samples_per_cpu_s"]})
            theirs = median_row(rows[TORCH_NAME])
            tf_row = median_row(rows[TF_NAME]) if tf_python is not None else None
            for name, found in rows.items():
                table.append({"protocol": protocol, "framework": name, **median_row(found),
                              "gauc_seeds": " / ".join(f"{r['gauc']:.4f}" for r in found)})
            for name, found in rows.items():
                if name.startswith("dinrec"):
                    report_ratios(protocol, name, median_row(found), theirs,
                                  reference=tf_row is None)
                    if tf_row is not None:
                        report_ratios(protocol, name, median_row(found), tf_row,
                                      other="DeepCTR (TF)", reference=False)
            if tf_row is not None:
                report_ratios(protocol, TORCH_NAME, theirs, tf_row, other="DeepCTR (TF)",
                              reference=False)
    print()
    print(markdown(table))
    if args.markdown is not None:
        args.markdown.write_text(markdown(table) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
