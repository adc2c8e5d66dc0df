"""The README's and docs' command sequences run as written, in order, in a fresh clone.

Each document gets its own copy of the checkout's tracked files (what a fresh clone holds:
no data/, runs/ or store.db) beside a `shared/data/ml-100k` holding a slice of the real
log (30 users), so `../shared/data/ml-100k` resolves as it does in the checkout. Its
marked ```bash blocks (see docs_blocks.py) run through bash with `set -euo pipefail`;
`dinrec` is this checkout's code. A `server` block starts its `dinrec serve` line on a
free port instead of 8000 and runs the lines after it (`curl --fail`) against it.

Besides every command succeeding, the outputs must agree with each other: evaluate prints
the run's own test metrics (no dataset-mismatch warning anywhere) and rank answers top_k.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.integration.cli_process import REPO_ROOT, child_env
from tests.integration.docs_blocks import Block, bash_blocks, commands

DOCS = ("README.md", "docs/serving.md", "docs/distributed.md")
SHARED_ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"
TINY_USERS = 30
_WARNING = re.compile(r"^dinrec [a-z]+: warning: .*$", re.MULTILINE)


def test_every_bash_block_is_marked_and_every_document_runs_something() -> None:
    for doc in DOCS:
        blocks = bash_blocks(REPO_ROOT / doc)  # raises naming an unmarked block
        assert any(b.kind in ("run", "server") for b in blocks), doc


def test_an_unmarked_block_is_named(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```bash\ndinrec demo\n```\n")
    with pytest.raises(ValueError, match=r"page\.md:3: a ```bash block needs a docs-test"):
        bash_blocks(page)


def fresh_clone(root: Path) -> Path:
    """root/clone with the checkout's tracked files, root/shared/data/ml-100k tiny."""
    clone = root / "clone"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                            check=False)
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 \
        else [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "configs").iterdir()]
    for name in names:
        if name.startswith(("src/", "tests/", "bench/")) or not (REPO_ROOT / name).is_file():
            continue  # the code runs from the checkout (PYTHONPATH)
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, clone / name)
    tiny_ml100k(root / "shared" / "data" / "ml-100k")
    bin_dir = root / "bin"  # `dinrec` as the console script would run it, from this checkout
    bin_dir.mkdir()
    (bin_dir / "dinrec").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dinrec "$@"\n')
    (bin_dir / "dinrec").chmod(0o755)
    return clone


def tiny_ml100k(out: Path) -> None:
    """The real ml-100k's item and user files with the ratings of its first users only."""
    out.mkdir(parents=True)
    for name in ("ml-100k.item", "ml-100k.user"):
        shutil.copy2(SHARED_ML100K / name, out / name)
    lines = (SHARED_ML100K / "ml-100k.inter").read_text().splitlines()
    users: list[str] = []
    kept = [lines[0]]
    for line in lines[1:]:
        user = line.split("\t", 1)[0]
        if user not in users and len(users) < TINY_USERS:
            users.append(user)
        if user in users:
            kept.append(line)
    (out / "ml-100k.inter").write_text("\n".join(kept) + "\n")


def env_for(root: Path) -> dict[str, str]:
    return child_env({"PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                      "OMP_NUM_THREADS": "1"})


def run_script(text: str, cwd: Path, env: dict[str, str], where: str) -> str:
    """bash -euo pipefail TEXT; a failure names the block and shows its output."""
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{where} failed:\n{text}\n{done.stdout}\n{done.stderr}"
    assert not _WARNING.search(done.stderr), f"{where} warned:\n{done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server_block(block: Block, cwd: Path, env: dict[str, str]) -> str:
    """The lines before `dinrec serve`, the server in the background, the lines after it."""
    lines = commands(block.text)
    at = next(i for i, line in enumerate(lines) if line.startswith("dinrec serve "))
    if at:
        run_script("\n".join(lines[:at]), cwd, env, block.where)
    port = free_port()
    serve = [*lines[at].split("#", 1)[0].split(), "--port", str(port)]
    log = cwd / "serve.log"  # a file, not a pipe nobody reads that could fill and block it
    with log.open("w") as sink:
        server = subprocess.Popen(serve, cwd=cwd, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"{block.where}: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"{block.where}: server never ready"
                time.sleep(0.2)
        rest = "\n".join(lines[at + 1:]).replace("localhost:8000", f"localhost:{port}")
        return run_script(rest.replace("curl -s ", "curl -sf "), cwd, env, block.where)
    finally:
        server.terminate()
        server.wait(timeout=30)


Run = tuple[Path, list[str]]  # the clone a document ran in, and each block's stdout


def run_document(doc: str, root: Path) -> Run:
    """Every run/server block of a document in order, in one fresh clone; their outputs."""
    clone = fresh_clone(root)
    env = env_for(root)
    outputs = []
    for block in bash_blocks(REPO_ROOT / doc):
        if block.kind == "run":
            outputs.append(run_script(block.text, clone, env, block.where))
        elif block.kind == "server":
            outputs.append(run_server_block(block, clone, env))
    return clone, outputs


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Run]]:
    """Every document's sequence, started at once: most of each command's seconds are
    spent importing torch, which overlaps well, so the three take about as long as the
    README alone. Each test waits for its own document (and sees its own failure)."""
    if not SHARED_ML100K.is_dir():
        pytest.skip("../shared/data/ml-100k is absent")
    pool = ThreadPoolExecutor(max_workers=len(DOCS))
    futures = {doc: pool.submit(run_document, doc, tmp_path_factory.mktemp("docs"))
               for doc in DOCS}
    pool.shutdown(wait=False)
    return futures


def last_json(text: str) -> dict:
    """The last of the JSON objects curl printed back to back (no newline between them)."""
    decoder, at, found = json.JSONDecoder(), 0, None
    text = text.strip()
    while at < len(text):
        found, at = decoder.raw_decode(text, at)
        while at < len(text) and text[at].isspace():
            at += 1
    assert isinstance(found, dict), text
    return found


def test_readme_sequence_runs_and_evaluate_repeats_the_runs_metrics(
    documents: dict[str, Future[Run]]
) -> None:
    clone, outputs = documents["README.md"].result()
    results = json.loads((clone / "runs/ml100k-rating/din/results.json").read_text())
    printed = "\n".join(outputs)
    assert f"AUC      {results['test']['auc']:.4f}" in printed  # evaluate = the run's test
    assert (clone / "runs/ml100k-rating/din/attention-196.png").is_file()  # beside the bundle
    assert "| DIN" in printed and "| Base Model" in printed  # compare found both runs
    ranked = last_json(outputs[-1])
    assert ranked["user_id"] == "196" and len(ranked["items"]) == 2
    assert not ranked["cold_start"]  # the store was filled from the dataset


def test_serving_quick_start_runs_and_ranks_a_user_with_history(
    documents: dict[str, Future[Run]]
) -> None:
    clone, outputs = documents["docs/serving.md"].result()
    ranked = last_json(outputs[0])
    assert [i["item_id"] for i in ranked["items"]] != [] and len(ranked["items"]) == 2
    assert ranked["history_length"] > 1 and not ranked["cold_start"]
    assert (clone / "din_demo" / "manifest.json").is_file()


def test_distributed_one_machine_command_runs(documents: dict[str, Future[Run]]) -> None:
    clone, _ = documents["docs/distributed.md"].result()
    results = json.loads((clone / "runs/ddp/results.json").read_text())
    assert results["epochs_run"] == 1 and 0.0 < results["test"]["auc"] < 1.0
