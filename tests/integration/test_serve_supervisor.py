"""`dinrec serve --workers 2`'s own supervisor (serving/http/supervisor.py) on loopback:
SIGTERM leaves no worker behind, a killed worker is replaced, a taken port is one clear
line, a worker that cannot start stops the server, and SIGHUP under load of fresh
connections loses at most the connections waiting in a retiring worker's accept queue."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.cli_process import child_env, run_python  # noqa: E402
from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.integration.test_serve_workers import SPEC, _wait_workers  # noqa: E402
from tests.support.demo_bundle import DemoSpec, build_demo_bundle  # noqa: E402

from dinrec.serving.http import supervisor  # noqa: E402
from dinrec.serving.scorer import bundle_version  # noqa: E402

pytestmark = pytest.mark.skipif(not supervisor.REUSEPORT, reason="needs SO_REUSEPORT")


def _all_ready(server: Server) -> set[int]:
    """The workers, once the parent has logged that all are ready (needs --log-level info;
    /readyz answers as soon as one is)."""
    deadline = time.monotonic() + 60
    while "All 2 workers ready on" not in server.log():
        assert server.proc.poll() is None and time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)
    return _wait_workers(server, 2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _still_alive(pids: set[int], within: float) -> list[int]:
    """The pids still running after waiting up to `within` seconds for them all to exit."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def test_sigterm_stops_every_worker_and_exits_0(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--log-level", "info"]) as server:
        workers = _all_ready(server)
        assert len(workers) == 2
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.log()[-3000:]
        assert _still_alive(workers, within=10) == []


def test_workers_of_a_parent_killed_outright_stop_themselves(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--log-level", "info"]) as server:
        workers = _all_ready(server)
        server.proc.kill()  # no SIGTERM reaches the workers
        server.proc.wait()
        assert _still_alive(workers, within=30) == []


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--keep-alive-timeout", "1",
                                    "--log-level", "info"]) as server:
        killed = min(_all_ready(server))
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _wait_workers(server, 2)
            if killed not in now and len(now) == 2 and server.log().count("died") == 1:
                break
            time.sleep(0.2)
        assert f"Worker [{killed}] died with exit code -9; starting a new one" in server.log()
        # The new worker answers once it listens; fresh connections reach both by hash.
        codes = [httpx.get(f"{server.url}/readyz", timeout=30).status_code for _ in range(20)]
        assert codes == [200] * 20


def test_a_replacement_that_cannot_start_is_retried_until_it_can(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--log-level", "info"]) as server:
        killed = min(_all_ready(server))
        away = bundle.rename(tmp_path / "away")  # the replacement fails to load it
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "before it was ready; trying again in 5 s" not in server.log():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.2)
        away.rename(bundle)
        while server.log().count("Application startup complete.") < 3:
            assert time.monotonic() < deadline + 30, server.log()[-3000:]
            time.sleep(0.2)
        assert server.proc.poll() is None
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200


def test_port_0_is_resolved_once_and_named_when_all_workers_are_ready(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dinrec", "serve", str(bundle), "--store",
             f"sqlite:///{tmp_path / 's.db'}", "--port", "0", "--workers", "2"],
            env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"All 2 workers ready on (http://127\.0\.0\.1:\d+)",
                                      (tmp_path / "server.log").read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, (
                (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        assert not found[1].endswith(":0")
        # Both workers listen on that one port: fresh connections all find one.
        codes = [httpx.get(f"{found[1]}/readyz", timeout=30).status_code for _ in range(10)]
        assert codes == [200] * 10
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_port_another_process_holds_is_one_clear_error(tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with socket.socket() as taken:  # no SO_REUSEPORT: the kernel refuses to share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_python(["-m", "dinrec", "serve", str(bundle), "--store",
                           f"sqlite:///{tmp_path / 's.db'}", "--port", str(port),
                           "--workers", "2"], cwd=tmp_path, timeout=120)
    assert done.returncode == 3  # uvicorn's STARTUP_FAILURE, as with one process
    assert done.stderr.strip().splitlines()[-1] == (
        f"dinrec serve: error: cannot bind 127.0.0.1:{port}: Address already in use")


def test_a_worker_that_cannot_start_stops_the_server(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Without the settings `dinrec serve` puts in SETTINGS_ENV, worker_app raises in every
    # worker before it listens: a new one would fail the same way, so the parent stops.
    from dinrec.serving.http.workers import SETTINGS_ENV

    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGHUP)}
    try:
        server = supervisor.Supervisor({"host": "127.0.0.1", "port": 0,
                                        "log_level": "warning"}, 2, start_s=60)
        with caplog.at_level("ERROR", logger="uvicorn.error"):
            code = server.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert code == 3
    assert "before it was ready; stopping (a new one would fail the same way)" in caplog.text
    assert not [w.pid for w in server.workers if _alive(w.pid)]


def test_sighup_under_fresh_connections_fails_no_request_with_an_http_error(
        tmp_path: Path) -> None:
    bundle = build_demo_bundle(tmp_path / "bundle", SPEC)
    with serving(bundle, tmp_path, ["--workers", "2", "--log-level", "info"]) as server:
        before = _all_ready(server)
        outcomes: Counter[str] = Counter()
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:  # a fresh connection per call: each is hashed to a worker anew
                    r = httpx.post(f"{server.url}/v1/rank", timeout=30,
                                   json={"user_id": "u1", "candidates": ["i1", "i2"]})
                    outcomes[str(r.status_code)] += 1
                except httpx.TransportError as err:
                    outcomes[type(err).__name__] += 1

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1)
        build_demo_bundle(bundle, DemoSpec(**{**SPEC.__dict__, "seed": 9}))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 90
        while (_wait_workers(server, 2) & before) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        assert not (_wait_workers(server, 2) & before), server.log()[-3000:]
        print("SIGHUP under load:", dict(outcomes))
        # Only a connection still waiting in a retiring worker's accept queue can fail (a
        # reset: ConnectError / ReadError / RemoteProtocolError), never with an HTTP error.
        answered = {k: v for k, v in outcomes.items() if k.isdigit()}
        assert set(answered) == {"200"} and answered["200"] >= 20, dict(outcomes)
        assert sum(outcomes.values()) - answered["200"] <= 2, dict(outcomes)
        r = httpx.post(f"{server.url}/v1/rank", json={"user_id": "u1", "candidates": ["i1"]},
                       timeout=30)
        assert r.json()["model_version"] == bundle_version(bundle)
