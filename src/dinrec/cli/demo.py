"""`dinrec demo`: the paper's ablation on the built-in synthetic log, in about 30 seconds.

    dinrec demo                      # Base Model, DIN, DIN+Dice, DIN+MBA+Dice; table + PNGs
    dinrec demo --tiny --out /tmp/d  # seconds: a smoke run

Library code: dinrec.experiment.demo_job.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from dinrec.cli.main import UsageError


def register(subparsers: Any) -> None:
    """Add the `demo` sub-command."""
    from dinrec.experiment.ablation import DEMO_ABLATION, VARIANTS

    p = subparsers.add_parser(
        "demo", help="train the Base Model and DIN variants on a synthetic log (no download)",
        description="Generate a synthetic click log, train the Base Model, DIN, DIN+Dice and "
                    "DIN+MBA+Dice, print AUC / GAUC / logloss / RelaImpr and write training "
                    "curves and an attention heatmap into the run directory.",
    )
    p.add_argument("--out", help="demo directory (default runs/demo-TIME)")
    p.add_argument("--size", choices=("tiny", "small", "default"), default="default",
                   help="preset size (default: about 30 s on 2 cores; tiny: seconds)")
    p.add_argument("--tiny", action="store_true", help="same as --size tiny (seconds)")
    p.add_argument("--users", type=int, help="synthetic users (items: twice as many)")
    p.add_argument("--epochs", type=int, help="epochs per model")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and every run")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1: the demo's batches are small, and "
                        "one thread beats two that contend with other work on a 2-core box)")
    p.add_argument("--models", default=",".join(DEMO_ABLATION),
                   help=f"comma-separated variants from {', '.join(VARIANTS)}")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a demo already in --out (only the files a demo writes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dinrec.experiment.ablation import variants
    from dinrec.experiment.demo_job import DEMO_SIZES, run_demo
    from dinrec.training.allocator import retain_freed_memory

    # The commands that train are an application, which may set process-wide allocator
    # state; the library does only when asked (dinrec.training.allocator).
    retain_freed_memory()
    size = DEMO_SIZES["tiny" if args.tiny else args.size]
    if args.users is not None:
        if args.users < 10:
            raise UsageError(f"--users must be >= 10, got {args.users}")
        size = dataclasses.replace(size, n_users=args.users, n_items=2 * args.users)
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
        size = dataclasses.replace(size, epochs=args.epochs)
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    out = Path(args.out) if args.out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    slugs = [s.strip() for s in args.models.split(",") if s.strip()]
    try:
        variants(slugs)  # before anything is built or written
    except ValueError as err:
        raise UsageError(f"--models: {err}") from None
    if not slugs:
        raise UsageError("--models needs at least one variant")
    result = run_demo(out, size, seed=args.seed, threads=args.threads, slugs=slugs,
                      overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    print()
    print(result.table)
    print()
    for path in result.files:
        print(f"wrote {path}")
    print(f"demo took {result.seconds:.0f} s; runs in {result.out_dir}")
    return 0
