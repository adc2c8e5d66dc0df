"""Running this checkout's dinrec in a child process, and reading what a run wrote.

Shared by the CLI workflow and the torchrun restart tests. A plain module, not a conftest:
the helpers are called from module-level functions and module-scoped fixtures, where a
fixture cannot be requested. pytest's importlib import mode names the test modules
`tests.integration.*`, which makes this module importable from them as
`tests.integration.cli_process`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the checkout's src first on PYTHONPATH (so the child
    runs the code under test, installed or not), then `extra` on top."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def run_python(args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
               timeout: float) -> subprocess.CompletedProcess[str]:
    """`python ARGS...` with this interpreter and child_env(env), output captured as text."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=child_env(env), timeout=timeout)


def epoch_records(run: Path) -> list[dict[str, float]]:
    """metrics.jsonl without the wall-clock field, so two runs' records can be compared."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
