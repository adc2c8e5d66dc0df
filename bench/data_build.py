"""Benchmark: build_dataset on real MovieLens logs (median of 3 runs); not part of the tests.

Times the whole `dinrec data build` path (read -> rating samples -> vocabularies -> Parquet)
on ml-100k (RecBole layout) and ml-latest-small's ratings.csv, from ../shared/data beside the
checkout; the goal is under 10 s each. A dataset that is absent is reported and skipped.

Run: python bench/data_build.py [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dinrec.data.build import build_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 10.0
# (name, source, path under the data folder, protocol)
CASES = (
    ("ml-100k", "movielens", "ml-100k", "rating"),
    ("ml-latest-small", "movielens", "movielens-latest-small/ratings.csv", "rating"),
)


def main() -> None:
    """Build each case `repeats` times into a fresh temporary directory; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    print(f"build_dataset, rating protocol, maxlen 50, median of {args.repeats} runs")
    for name, source, relative, protocol in CASES:
        path = args.data / relative
        if not path.exists():
            print(f"{name:16s} skipped: {path} is absent")
            continue
        times: list[float] = []
        samples = 0
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                summary = build_dataset(source, path, protocol, Path(tmp) / "out", maxlen=50)
                times.append(time.perf_counter() - start)
                samples = summary.total_samples
        median = statistics.median(times)
        verdict = "ok" if median < GOAL_S else f"over the {GOAL_S:.0f} s goal"
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name:16s} {median:6.2f} s  ({samples:,} samples; runs {runs} s) {verdict}")


if __name__ == "__main__":
    main()
