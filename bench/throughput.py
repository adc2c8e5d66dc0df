"""Benchmark: DIN training / inference throughput on ml100k (rating and next-item), 1 thread.

Builds each protocol's arrays with dinrec's data pipeline (../shared/data/ml-100k), then runs
dinrec's DIN in a worker process with the fixed config of ml100k_data.CONFIG (embedding 16,
attention (64, 16) Dice, MLP (256, 128) relu, batch 256, Adam 1e-3, 5 epochs, 1 thread).
Reports the median training samples/s over epochs 2..5, inference samples/s at batch 4096,
peak RSS of the worker, and test AUC / GAUC (grouped by user_key). Not part of the tests.

Run:
    nice python bench/throughput.py [--protocols rating next-item] [--epochs 5]
        [--options '{"sparse_embeddings": true}'] [--repeat 1] [--json out.json]
`--options` passes extra DIN keyword arguments, so each speed option is measured alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ml100k_data import CONFIG, PROTOCOLS, build_arrays, run_worker, summarize

# "/cpu s": samples per CPU-second of the worker (what the shared machine's load disturbs less).
HEADER = (f"{'protocol':10s} {'framework':16s} {'train/s':>9s} {'train/cpu s':>11s} "
          f"{'infer/s':>9s} {'infer/cpu s':>11s} {'RSS MiB':>8s} {'AUC':>7s} {'GAUC':>7s}")


def fmt_row(protocol: str, name: str, row: dict[str, float]) -> str:
    return (f"{protocol:10s} {name:16s} {row['train_sps']:9,.0f} {row['train_sps_cpu']:11,.0f} "
            f"{row['infer_sps']:9,.0f} {row['infer_sps_cpu']:11,.0f} {row['rss_mib']:8,.0f} "
            f"{row['auc']:7.4f} {row['gauc']:7.4f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    parser.add_argument("--options", default="{}", help="JSON: extra DIN keyword arguments")
    parser.add_argument("--compile-options", default="{}", help="JSON: extra compile() kwargs")
    parser.add_argument("--compile-dense", action="store_true",
                        help="torch.compile dinrec's activation unit (model.compile_dense())")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 GEMMs in dinrec's activation unit (model.attention_bf16())")
    parser.add_argument("--repeat", type=int, default=1, help="dinrec runs per protocol")
    parser.add_argument("--baseline-src", help="also run the dinrec under this src dir (e.g. "
                        "`git archive <commit> src | tar -x -C DIR` then DIR/src), interleaved")
    parser.add_argument("--json", type=Path, help="write every row as JSON here")
    return parser.parse_args(argv)


def dinrec_extra(args: argparse.Namespace) -> list[str]:
    extra = ["--options", args.options, "--compile-options", args.compile_options]
    extra += ["--compile-dense"] if args.compile_dense else []
    return [*extra, "--bf16"] if args.bf16 else extra


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    CONFIG["epochs"] = args.epochs
    rows: list[dict[str, Any]] = []
    print(f"config: {json.dumps(CONFIG)} options: {args.options} {args.compile_options}")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in args.protocols:
            arrays = Path(tmp) / f"{protocol}.npz"
            spec = build_arrays(protocol, arrays)
            runs = [("dinrec", None, dinrec_extra(args))]
            if args.baseline_src:
                runs.insert(0, ("dinrec@baseline", args.baseline_src, []))
            for _ in range(args.repeat):
                for name, src, extra in runs:
                    result = run_worker(sys.executable, "run_dinrec.py", arrays, spec, extra,
                                        pythonpath=src)
                    row = summarize(result, arrays)
                    print(fmt_row(protocol, name, row), flush=True)
                    rows.append({"protocol": protocol, "framework": name, **row,
                                 "epoch_samples_per_s": result["epoch_samples_per_s"],
                                 "loss": result["loss"]})
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
