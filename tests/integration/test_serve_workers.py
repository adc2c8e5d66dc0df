"""`dinrec serve --workers 2` on loopback: two processes share the port (each its own
SO_REUSEPORT socket) and the store, each with its own rank cache, every one sees events
whichever took them, and a burst of connections spreads over both."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.integration.serve_sockets import (  # noqa: E402
    connections_held,
    get_healthz,
    open_connections,
)
from tests.support.demo_bundle import DemoSpec, build_demo_bundle  # noqa: E402

from dinrec.serving.scorer import bundle_version  # noqa: E402

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)


def _workers(server: Server) -> set[int]:
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
    if not children.exists():
        pytest.skip("needs /proc to list the worker processes")
    # uvicorn's spawned workers, beside multiprocessing's resource tracker (no --port).
    pids = {int(p) for p in children.read_text().split()}
    return {p for p in pids if _is_worker(p)}


def _is_worker(pid: int) -> bool:
    # A worker replaced on SIGHUP can exit between listing the children and reading its
    # cmdline: a process that is gone is no longer a worker.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"dinrec" in cmdline or b"spawn_main" in cmdline


def _wait_workers(server: Server, n: int) -> set[int]:
    deadline = time.monotonic() + 30
    while len(pids := _workers(server)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids


def test_two_workers_share_the_store_and_see_each_others_events(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--keep-alive-timeout", "1"]) as server:
        assert len(_wait_workers(server, 2)) >= 2
        errors: list[str] = []

        def client(worker: int) -> None:
            user = f"w{worker}"
            for i in range(6):
                # A new connection per call: the kernel hands them to either worker.
                event = {"user_id": user, "item_id": f"i{i}", "timestamp": 1000 + i}
                r = httpx.post(f"{server.url}/v1/events", json={"events": [event]}, timeout=30)
                if r.status_code != 200:
                    errors.append(f"events {r.status_code} {r.text}")
                for _ in range(2):  # the second is served from that worker's cache
                    r = httpx.post(f"{server.url}/v1/rank", timeout=30,
                                   json={"user_id": user, "candidates": ["i1", "i2"]})
                    if r.status_code != 200:
                        errors.append(f"rank {r.status_code} {r.text}")
                    elif r.json()["history_length"] != i + 1:
                        errors.append(f"{user} saw {r.json()['history_length']} after {i + 1}")

        threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

        # SIGHUP to the parent replaces every worker, each loading the bundle afresh.
        before = _workers(server)
        build_demo_bundle(bundle, DemoSpec(**{**SPEC.__dict__, "seed": 9}))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while (_workers(server) & before) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (_workers(server) & before), server.log()[-3000:]
        for _ in range(4):
            r = httpx.post(f"{server.url}/v1/rank", json={"user_id": "w1",
                                                          "candidates": ["i1"]}, timeout=30)
            assert r.json()["model_version"] == bundle_version(bundle)


def test_workers_refuse_an_admin_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dinrec.cli.main import main

    monkeypatch.setenv("WORKERS_ADMIN_KEY", "k")
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    code = main(["serve", str(bundle), "--store", f"sqlite:///{tmp_path / 's.db'}",
                 "--workers", "2", "--admin-key-env", "WORKERS_ADMIN_KEY"])
    assert code == 2
    assert "send SIGHUP to the dinrec serve process" in capsys.readouterr().err


# 24 connections hashed over 2 workers: P(one holds <= 2) = 2 * (1 + 24 + 276) / 2**24 = 3.6e-5.
BURST, FEWEST = 24, 3


def _wait_started(server: Server, n: int) -> None:
    """Wait until `n` workers have logged uvicorn's startup line (needs --log-level info)."""
    deadline = time.monotonic() + 60
    while server.log().count("Application startup complete.") < n:
        assert time.monotonic() < deadline, server.log()[-3000:]
        assert server.proc.poll() is None, server.log()[-3000:]
        time.sleep(0.2)


def test_a_burst_of_keep_alive_connections_spreads_over_the_workers(tmp_path: Path) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to count each worker's connections")
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--log-level", "info"]) as server:
        _wait_started(server, 2)
        workers = _wait_workers(server, 2)
        # One worker stopped stands for its event loop busy scoring when the burst arrives.
        # On one shared socket (uvicorn's supervisor) the other worker accepts all 24 and
        # keeps them while the busy one idles afterwards; with SO_REUSEPORT the kernel
        # queued each connection for one worker by its hash, and the busy one accepts its
        # share once it is free. (Idle, bursts of 24 on the shared socket split anywhere
        # from 11/13 to 0/24 when measured by hand: too rare an 0/24 to test on.)
        busy = min(workers)
        os.kill(busy, signal.SIGSTOP)
        try:
            conns = open_connections(server.port, BURST)
            time.sleep(0.2)  # a forward pass or two: the free worker accepts meanwhile
        finally:
            os.kill(busy, signal.SIGCONT)
        try:
            get_healthz(conns)
            held = sorted(connections_held(pid, server.port) for pid in workers)
        finally:
            for conn in conns:
                conn.close()
        assert sum(held) == BURST and held[0] >= FEWEST, held
