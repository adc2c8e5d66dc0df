"""`dinrec train CONFIG.toml [--set section.key=value ...]`: one experiment into a run dir.

    dinrec train configs/ml100k-rating.toml --data data/ml100k-rating   # a built dataset
    dinrec train configs/ml100k-rating.toml --set training.epochs=3
    dinrec train --resume runs/ml100k-rating-20250101-120000

Library code: dinrec.experiment.config (the typed config) and dinrec.experiment.runner.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dinrec.cli.main import UsageError

# The one section --set may change on --resume: how the ranks share the work (TorchRec or
# DDP tables, Dice statistics, buckets), not what is trained; checkpoints load across it.
RESUMABLE = "distributed."


def register(subparsers: Any) -> None:
    """Add the `train` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a model from a TOML experiment config",
        description="Train DIN or the Base Model from a TOML config (sections data, model, "
                    "training, output, distributed) into a run directory: resolved config, "
                    "metrics.jsonl, "
                    "train.log, checkpoints, the best model bundle, test metrics and plots.",
    )
    p.add_argument("config", nargs="?", help="experiment config (TOML)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. training.epochs=3 (repeatable; VALUE "
                        "is a TOML value or a bare string)")
    p.add_argument("--variant", metavar="NAME",
                   help="apply one of the paper's model variants to [model]: base, din, "
                        "din-dice, din-mba, din-mba-dice (before --set)")
    p.add_argument("--data", metavar="DATASET",
                   help="train on this dataset directory (from `dinrec data build`) instead of "
                        "building one from [data]; refused when built with other options")
    p.add_argument("--out", help="run directory (default: output.dir, else runs/NAME-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in the run directory (only its run files)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.set_defaults(func=run)


def default_run_dir(name: str) -> Path:
    """runs/<name>-<YYYYmmdd-HHMMSS> under the current directory."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run(args: argparse.Namespace) -> int:
    from dinrec.experiment.config import load_config
    from dinrec.experiment.data_source import with_dataset
    from dinrec.experiment.runner import BUNDLE_DIR, CONFIG_FILE, CURVES_FILE, run_experiment
    from dinrec.training.allocator import retain_freed_memory

    # The commands that train are an application, which may set process-wide allocator
    # state; the library does only when asked (dinrec.training.allocator).
    retain_freed_memory()
    if args.resume:
        if args.out or args.variant or args.overwrite or args.data:
            raise UsageError("--resume continues a run with its saved config; --variant, "
                             "--data, --out and --overwrite do not apply")
        for text in args.overrides:
            key = text.split("=", 1)[0].strip()
            if not key.startswith(RESUMABLE):
                raise UsageError(
                    f"--resume: --set {key} would change what the run trains; only "
                    f"{RESUMABLE}* settings (how the ranks share the work) may change on resume")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise UsageError(f"--resume {run_dir}: not a run directory ({CONFIG_FILE} missing)")
        config = load_config(run_dir / CONFIG_FILE, args.overrides)
        if args.config:
            given = load_config(args.config, args.overrides).to_dict()
            saved = config.to_dict()
            given["output"].pop("dir", None)
            saved["output"].pop("dir", None)
            if given != saved:
                keys = [f"{s}.{k}" for s in saved for k in set(saved[s]) | set(given.get(s, {}))
                        if saved[s].get(k) != given.get(s, {}).get(k)]
                raise UsageError(f"{args.config} differs from the config of run {run_dir} "
                                 f"({', '.join(sorted(keys))}); resume without CONFIG")
    else:
        if not args.config:
            raise UsageError("give a CONFIG.toml to train, or --resume RUN_DIR")
        config = load_config(args.config, args.overrides, variant=args.variant)
        if args.data:
            try:
                config = with_dataset(config, args.data)
            except ValueError as err:
                raise UsageError(f"--data: {err}") from None
        if args.out:
            run_dir = Path(args.out)
        elif config.output.dir:
            run_dir = Path(config.output.dir)
        else:
            run_dir = default_run_dir(config.output.name)
    # Printed by main() after "interrupted": the last checkpoint on disk is intact.
    args.interrupt_hint = f"continue with `dinrec train --resume {run_dir}`"
    result = run_experiment(config, run_dir, resume=bool(args.resume),
                            overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    from dinrec.training.distributed.launch import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports
        return 0
    t = result.test
    print(f"run:      {result.run_dir}")
    print(f"model:    {result.model}, best epoch {result.best_epoch} of {result.epochs_run}")
    print(f"test:     AUC {t['auc']:.4f}  GAUC {t['gauc']:.4f}  logloss {t['logloss']:.4f}")
    print(f"bundle:   {result.run_dir / BUNDLE_DIR}")
    if (result.run_dir / CURVES_FILE).is_file():
        print(f"curves:   {result.run_dir / CURVES_FILE}")
    return 0
