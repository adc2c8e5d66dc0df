"""Benchmark: GAUC on 1M rows and 100k groups (median of 5 runs); not part of the test suite.

Run: python bench/gauc_speed.py [--rows N] [--groups G] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dinrec.metrics import auc, gauc


def main() -> None:
    """Time gauc (int and string groups) and auc on random data with ties; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    groups = rng.integers(0, args.groups, args.rows)
    labels = (rng.random(args.rows) < 0.3).astype(np.int8)
    # float32 probabilities rounded to 3 decimals: realistic ties within a user.
    scores = np.round(rng.random(args.rows).astype(np.float32), 3)
    str_groups = np.char.add("u", groups.astype(str))

    def median_seconds(fn: object, *xs: np.ndarray) -> tuple[float, float]:
        times = []
        value = float("nan")
        for _ in range(args.repeats):
            start = time.perf_counter()
            value = fn(*xs)  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return statistics.median(times), value

    print(f"{args.rows:,} rows, {args.groups:,} groups, median of {args.repeats} runs")
    for name, fn, xs in [
        ("gauc (int groups)", gauc, (labels, scores, groups)),
        ("gauc (str groups)", gauc, (labels, scores, str_groups)),
        ("auc", auc, (labels, scores)),
    ]:
        seconds, value = median_seconds(fn, *xs)
        print(f"{name:20s} {seconds * 1000:8.1f} ms   value={value:.6f}")


if __name__ == "__main__":
    main()
