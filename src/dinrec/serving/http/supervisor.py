"""`dinrec serve --workers N`: N worker processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own supervisor hands every worker one shared listening socket. Under uvloop the
worker that wakes first accepts every connection waiting in the queue, so a burst of 8
keep-alive connections landed 8/0 or 7/1 on 2 workers (docs/serving.md, Threads). Here each
worker binds the same host:port with SO_REUSEPORT and listens itself, and the kernel picks
the worker of each new connection by a hash of its 4-tuple (nginx `reuseport`, gunicorn
`--reuse-port`).

The parent binds a socket to host:port with SO_REUSEPORT but never listens on it: a bound
socket that does not listen takes no connections, yet it reserves the port (another process
without SO_REUSEPORT cannot take it while workers restart) and resolves port 0 to a real one.
A worker builds its app (torch, the bundle, the store) before it listens, so no connection
waits on a worker still loading.

Signals to the parent: SIGINT / SIGTERM stop every worker gracefully (uvicorn finishes the
requests in flight); SIGHUP replaces the workers one at a time, each retired only once its
replacement listens. A worker that dies is replaced; one that dies before it was ever ready
at startup stops the server (it would fail the same way again).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from dinrec.serving.http.workers import WorkerProtocol, worker_app

REUSEPORT = hasattr(socket, "SO_REUSEPORT")
STOP_S = 30  # a stopping worker's time to finish its requests before it is killed
RESPAWN_DELAY_S = 5  # between replacements of a worker that keeps dying before it is ready
READY = "ready"

logger = logging.getLogger("uvicorn.error")


def address(host: str, port: int) -> str:
    """host:port, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEADDR and SO_REUSEPORT (not listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that tells the parent once it has started serving."""

    def __init__(self, config: uvicorn.Config, ready: Connection) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.send(READY)


def _worker_main(ready: Connection, options: dict[str, Any]) -> None:  # runs in the child
    # Ctrl-C reaches the whole process group: while loading, the parent's SIGTERM stops this
    # worker; once serving, uvicorn's own handler shuts it down gracefully (and restores
    # this SIG_IGN afterwards, so re-raising the signal is a no-op, not a traceback).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    config = uvicorn.Config(worker_app(), http=WorkerProtocol, **options)
    sock = reuseport_socket(options["host"], options["port"])
    sock.listen(config.backlog)
    _ReadyServer(config, ready).run(sockets=[sock])


def _stop_when_orphaned(parent: int) -> None:
    # A parent killed outright (SIGKILL, OOM) sends no SIGTERM: without this its workers
    # would keep the port and serve on, unsupervised, until someone finds them.
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclasses.dataclass
class Worker:
    """One worker process and the parent's end of its readiness pipe."""

    process: SpawnProcess
    conn: Connection
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def poll_ready(self) -> bool:
        try:
            while not self.ready and self.conn.poll():
                self.ready = self.conn.recv() == READY
        except (EOFError, OSError):  # the worker died; its exit code says more
            pass
        return self.ready

    def stop(self, deadline: float) -> None:
        """SIGTERM (uvicorn's graceful shutdown), wait until `deadline`, then SIGKILL."""
        if self.process.exitcode is None:
            os.kill(self.pid, signal.SIGTERM)
        self.process.join(max(0.0, deadline - time.monotonic()))
        if self.process.exitcode is None:
            logger.warning("Worker [%d] still running after %d s; killing it", self.pid, STOP_S)
            self.process.kill()
            self.process.join()
        self.conn.close()


class Supervisor:
    """Runs `workers` worker processes on host:port (uvicorn `options`) until SIGINT/SIGTERM.

    Args:
        options: uvicorn.Config keyword arguments every worker gets (host, port, log_level,
            access_log, server_header, timeout_keep_alive); port 0 is resolved here.
        workers: how many worker processes.
        start_s: how long a new worker may take to load and listen.
    """

    def __init__(self, options: dict[str, Any], workers: int, start_s: float) -> None:
        self.reserved = reuseport_socket(options["host"], options["port"])
        self.options = {**options, "port": self.reserved.getsockname()[1]}
        self.n, self.start_s = workers, start_s
        self.workers: list[Worker] = []
        self.retry_at: list[float | None] = [None] * workers  # a slot's next respawn
        self.signals: list[int] = []
        self.context = multiprocessing.get_context("spawn")

    def _spawn(self) -> Worker:
        parent_end, child_end = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker_main, args=(child_end, self.options),
                                       name="dinrec-serve-worker")
        process.start()
        child_end.close()
        logger.info("Started worker [%d]", process.pid)
        return Worker(process, parent_end)

    def _stopping(self) -> bool:
        return signal.SIGINT in self.signals or signal.SIGTERM in self.signals

    def _wait_ready(self, worker: Worker) -> bool:
        """Whether `worker` becomes ready within start_s (False: it died, timed out, or a
        stop signal came)."""
        deadline = time.monotonic() + self.start_s
        while not worker.poll_ready():
            if (worker.process.exitcode is not None or self._stopping()
                    or time.monotonic() > deadline):
                return False
            worker.conn.poll(0.1)
        return True

    def run(self) -> int:
        """Serve until SIGINT / SIGTERM; the exit code (uvicorn's STARTUP_FAILURE when a
        worker fails before it was ever ready)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda sig, frame: self.signals.append(sig))
        logger.info("Started parent process [%d]", os.getpid())
        try:
            self.workers = [self._spawn() for _ in range(self.n)]
            for worker in self.workers:
                if not self._wait_ready(worker):
                    if self._stopping():
                        return 0
                    logger.error("Worker [%d] %s before it was ready; stopping (a new one "
                                 "would fail the same way)", worker.pid, _failure(worker))
                    return STARTUP_FAILURE
            logger.info("All %d workers ready on %s (SO_REUSEPORT; Press CTRL+C to quit)",
                        self.n, "http://" + address(self.options["host"], self.options["port"]))
            self._serve()
            return 0
        finally:
            deadline = time.monotonic() + STOP_S
            for worker in self.workers:
                if worker.process.exitcode is None:
                    os.kill(worker.pid, signal.SIGTERM)
            for worker in self.workers:
                worker.stop(deadline)
            self.reserved.close()
            logger.info("Stopping parent process [%d]", os.getpid())

    def _serve(self) -> None:
        while not self._stopping():
            alive = [w for w in self.workers if w.process.exitcode is None]
            wait([w.process.sentinel for w in alive] + [w.conn for w in alive], timeout=0.5)
            if signal.SIGHUP in self.signals:
                self.signals = [s for s in self.signals if s != signal.SIGHUP]
                self._replace_all()
            for i, worker in enumerate(self.workers):
                worker.poll_ready()
                if worker.process.exitcode is None:
                    continue
                retry_at = self.retry_at[i]
                if worker.ready:
                    logger.warning("Worker [%d] died with exit code %s; starting a new one",
                                   worker.pid, worker.process.exitcode)
                elif retry_at is None:  # a replacement that never became ready: wait first
                    logger.error("Worker [%d] %s before it was ready; trying again in %d s",
                                 worker.pid, _failure(worker), RESPAWN_DELAY_S)
                    self.retry_at[i] = time.monotonic() + RESPAWN_DELAY_S
                    continue
                elif time.monotonic() < retry_at:
                    continue
                worker.conn.close()
                self.workers[i], self.retry_at[i] = self._spawn(), None

    def _replace_all(self) -> None:
        """SIGHUP: replace each worker by a new one (loading the bundle afresh), retiring the
        old one only once the new one listens; on a failure keep the old ones."""
        logger.info("Received SIGHUP, replacing %d workers one at a time", self.n)
        for i, old in enumerate(list(self.workers)):
            new = self._spawn()
            if not self._wait_ready(new):
                failure = _failure(new)
                new.process.kill()
                new.process.join()
                if not self._stopping():
                    logger.error("New worker [%d] %s before it was ready; keeping worker [%d] "
                                 "and aborting the reload", new.pid, failure, old.pid)
                new.conn.close()
                return
            self.workers[i], self.retry_at[i] = new, None
            old.stop(time.monotonic() + STOP_S)
            logger.info("Worker [%d] replaced by [%d]", old.pid, new.pid)


def _failure(worker: Worker) -> str:
    code = worker.process.exitcode
    return "was not ready in time" if code is None else f"exited with code {code}"
