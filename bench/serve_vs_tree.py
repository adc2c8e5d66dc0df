"""`dinrec serve` of this tree against an older tree, each with its own bench and bundle.

bench/serve_latency.py --baseline-src runs the older tree's server on the bundle this tree
builds, which an old enough tree cannot read. This script runs each tree's own
bench/serve_latency.py (its own demo bundle of the same DemoSpec, its own server), the
older tree first in each pair, alternating, and prints the medians per backend and
concurrency with the ratio this / older:

    git archive b207b64 | tar -x -C /tmp/old      # a whole tree: its bench imports tests/
    python3 bench/serve_vs_tree.py /tmp/old --pairs 3 --backends torch,onnx --seconds 6

Both scripts must print --json lines with concurrency, requests_per_s, p99_ms and
server_cpu_ms_per_request (every tree since November 2026 does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FIELDS = ("requests_per_s", "p99_ms", "server_cpu_ms_per_request")


def one_run(tree: Path, backend: str, concurrency: str, seconds: float) -> list[dict]:
    """One bench/serve_latency.py run of `tree`, its JSON lines (one per concurrency)."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    out = subprocess.run(
        [sys.executable, "bench/serve_latency.py", "--backend", backend, "--concurrency",
         concurrency, "--seconds", str(seconds), "--json"],
        cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in rows if "median_of" not in r]  # a newer tree also prints its medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("older", type=Path, help="the other tree's root (with src/, bench/)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not (args.older / "bench" / "serve_latency.py").is_file():
        parser.error(f"{args.older}: no bench/serve_latency.py in it")
    runs: dict[tuple[str, str, int], list[dict]] = {}
    loads = []
    for _ in range(args.pairs):
        for backend in args.backends.split(","):
            for name, tree in (("older", args.older.resolve()), ("this", HERE)):
                loads.append(os.getloadavg()[0])
                for row in one_run(tree, backend, args.concurrency, args.seconds):
                    runs.setdefault((backend, name, int(row["concurrency"])), []).append(row)
    print(f"medians of {args.pairs} pairs (older tree first in each), 1-min load "
          f"{min(loads):.2f}-{max(loads):.2f} at the runs' starts")
    print("| backend | c | older: req/s, p99 ms, CPU ms/request | this tree | req/s this/older |")
    print("|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for c in sorted({c for (b, _, c) in runs if b == backend}):
            med = {name: [statistics.median(r[f] for r in runs[(backend, name, c)])
                          for f in FIELDS] for name in ("older", "this")}
            cells = [", ".join(f"{v:.1f}" if i < 2 else f"{v:.2f}" for i, v in enumerate(m))
                     for m in med.values()]
            ratio = med["this"][0] / med["older"][0]
            print(f"| {backend} | {c} | {cells[0]} | {cells[1]} | x{ratio:.2f} |")
    for (backend, name, c), rows in sorted(runs.items()):
        values = ", ".join(f"{r['requests_per_s']:.0f}/{r['p99_ms']:.1f}" for r in rows)
        print(f"  {backend} {name} c={c}: req/s / p99 ms per run: {values}")


if __name__ == "__main__":
    main()
