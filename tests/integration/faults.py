"""Fault injection for the restart tests: `dinrec` with a callback that SIGKILLs a worker.

    python tests/integration/faults.py [RANK:]STEP train CONFIG ...

runs the dinrec CLI with KillAtStep passed to run_experiment: right after optimizer step STEP
(after that step's checkpoint, if any) the process (under torchrun: rank RANK) sends itself
SIGKILL, which is exactly what an out-of-memory kill or a pre-empted machine does. Under
torchrun it fires on the job's first attempt only, so a restarted job can finish. The
library holds no fault injection of its own: this script passes it in.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from dinrec.training.callbacks import Callback
from dinrec.training.distributed.launch import DistEnv, read_env

SCRIPT = Path(__file__).resolve()


class KillAtStep(Callback):
    """SIGKILL this process after optimizer step `step`, on a job's first attempt only.

    Args:
        spec: "STEP" (any rank) or "RANK:STEP".
        env: the torchrun environment (default: this process's).
    """

    def __init__(self, spec: str, env: DistEnv | None = None) -> None:
        env = read_env() if env is None else env
        rank, _, step = spec.rpartition(":")
        first_attempt = env.restart_count == 0
        self.kill_at = int(step) if first_attempt and rank in ("", str(env.rank)) else None

    def on_batch_end(self, step: int, logs: dict[str, float] | None = None) -> None:
        if self.kill_at is not None and step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: Sequence[str]) -> int:
    from dinrec.cli.main import main as dinrec_main
    from dinrec.experiment import runner

    spec, *args = argv
    # `dinrec train` looks run_experiment up when it runs: it gets the one with the callback.
    runner.run_experiment = functools.partial(
        runner.run_experiment, callbacks=[KillAtStep(spec)])
    return dinrec_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
