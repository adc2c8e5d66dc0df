"""`dinrec serve BUNDLE`: the HTTP ranking service (FastAPI on uvicorn, extra `serve`).

One process, one torch (or ONNX Runtime) intra-op thread: measured on a 2-core machine,
2 threads stalled a forward pass by ~170 ms whenever another process held a core, while 1
thread stayed steady. Scale out with more `dinrec serve` processes (one port each, behind a
load balancer, sharing a Redis store), not more threads.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import sys
from typing import Any

from dinrec.cli.main import SERVE_EXTRA_HINT, UsageError

LOOPBACK_NAMES = ("localhost",)
WORKER_START_S = 60


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model bundle over HTTP (rank, score, events)",
        description="Serve a model bundle: POST /v1/rank, /v1/score, /v1/events; "
        "GET /v1/model, /healthz, /readyz, /metrics; docs at /docs. SIGHUP or "
        "POST /admin/reload swaps in a new bundle without dropping requests.",
    )
    parser.add_argument("bundle", help="model bundle directory (model.save / dinrec train)")
    parser.add_argument(
        "--store", default="sqlite:///dinrec-store.db",
        help="behavior store: sqlite:///relative.db, sqlite:////abs/path.db or "
        "redis://HOST:PORT/DB (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key-env", metavar="VAR",
        help="name of the environment variable holding the API key; then every endpoint but "
        "/healthz and /readyz needs it in the X-API-Key header",
    )
    parser.add_argument(
        "--admin-key-env", metavar="VAR",
        help="name of the environment variable holding the admin key, which /admin/reload "
        "needs in the X-Admin-Key header (the API key does not open it); without it the "
        "server has no admin routes",
    )
    parser.add_argument(
        "--bundle-root", metavar="DIR",
        help="the only directory /admin/reload loads bundles from, named relative to it "
        "(default: the directory holding BUNDLE)",
    )
    parser.add_argument("--max-candidates", type=int, default=1000,
                        help="most candidates per rank call / rows per score call")
    parser.add_argument("--max-events", type=int, default=1000, help="most events per call")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20,
                        help="largest request body (default 1 MiB)")
    parser.add_argument(
        "--user-feature", metavar="NAME",
        help="the model input fed with the request's user_id (default: user_id, if present)",
    )
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="onnx needs `dinrec export BUNDLE --format onnx` first")
    parser.add_argument(
        "--inference-threads", type=int, default=2,
        help="requests scored at once, each on its own thread (default 2; 0: on the event "
        "loop thread)",
    )
    parser.add_argument(
        "--history-keep", type=int, metavar="N",
        help="behaviors the store keeps per user when events arrive (default: the model's "
        "maxlen); more lets a rank call fill the places of stored behaviors the model cannot "
        "take from older ones",
    )
    parser.add_argument(
        "--cache-users", type=int, default=10_000, metavar="N",
        help="users whose encoded history and profile stay cached between rank calls "
        "(default %(default)s; 0: read the store every call); any write to the store, by "
        "any process, invalidates the cache",
    )
    parser.add_argument(
        "--cache-items", type=int, default=200_000, metavar="N",
        help="candidate items whose category and encoded ids stay cached (default "
        "%(default)s; 0: none)",
    )
    parser.add_argument(
        "--header-timeout", type=float, default=10.0, metavar="SECONDS",
        help="close a connection whose request headers have not all arrived this long after "
        "it opened or the request began, with a 408 (default %(default)s)",
    )
    parser.add_argument(
        "--body-timeout", type=float, default=30.0, metavar="SECONDS",
        help="close a connection whose request body has not all arrived this long after its "
        "headers, with a 408 (default %(default)s)",
    )
    parser.add_argument(
        "--keep-alive-timeout", type=float, default=5.0, metavar="SECONDS",
        help="close a kept-alive connection idle this long after a response (default "
        "%(default)s; behind a proxy, keep it above the proxy's own idle timeout)",
    )
    parser.add_argument(
        "--max-connections", type=int, default=1000, metavar="N",
        help="most connections open at once; more are answered 503 and closed (default "
        "%(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="worker processes, each on its own SO_REUSEPORT socket of the port (the kernel "
        "spreads connections by hash), sharing the store, each with its own rank cache "
        "(default 1); SIGHUP then replaces every worker, and there are no admin routes",
    )
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of torch (default 1, see docs/serving.md)")
    parser.add_argument(
        "--kernel-threads", type=int, metavar="N",
        help="most threads the fused activation-unit kernel runs at once, all requests "
        "together: a large request (long history, many candidates) takes the free ones "
        "(default: the CPUs this process may use, divided among --workers; 1: each request "
        "on its own thread)",
    )
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_from_env(var: str | None, flag: str = "--api-key-env") -> str | None:
    """The key held in environment variable `var` (None when no variable is named)."""
    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key:
        raise UsageError(f"{flag} {var}: the environment variable is unset or empty")
    return key


def set_threads(threads: int) -> None:
    """Set torch's intra-op (and, once per process, inter-op) thread counts."""
    import torch

    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    # Raises once inter-op work has run in this process; the default is then kept.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def set_kernel_threads(threads: int | None, workers: int) -> int:
    """Set (and return) the fused unit kernel's thread limit in this process: `threads`, or
    the CPUs this process may use shared among the workers."""
    from dinrec.serving import unit_kernel

    if threads is None:
        threads = max(1, unit_kernel.available_cpus() // workers)
    if threads < 1:
        raise UsageError(f"--kernel-threads must be >= 1, got {threads}")
    unit_kernel.budget.limit = threads
    return threads


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from uvicorn.config import STARTUP_FAILURE

        from dinrec.serving.http import supervisor
        from dinrec.serving.http.app import create_app
        from dinrec.serving.http.connections import ConnectionLimits, protocol_class
        from dinrec.serving.http.workers import APP_FACTORY, PROTOCOL, SETTINGS_ENV, settings_env
        from dinrec.serving.service import ServeConfig
    except ModuleNotFoundError as err:
        raise UsageError(
            f"serving needs the 'serve' extra ({err.name} is missing): "
            + SERVE_EXTRA_HINT
        ) from None
    api_key = api_key_from_env(args.api_key_env)
    admin_key = api_key_from_env(args.admin_key_env, "--admin-key-env")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1 and admin_key is not None:
        raise UsageError(
            "--admin-key-env: with --workers > 1 an HTTP reload would reach one worker only; "
            "send SIGHUP to the dinrec serve process instead (it replaces every worker)"
        )
    if not _is_loopback(args.host) and api_key is None:
        print(f"dinrec serve: warning: listening on {args.host} without an API key "
              "(--api-key-env)", file=sys.stderr)
    set_threads(args.threads)
    kernel_threads = set_kernel_threads(args.kernel_threads, args.workers)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = ServeConfig(
        bundle=args.bundle, store=args.store, backend=args.backend,
        max_candidates=args.max_candidates, max_events=args.max_events,
        max_body_bytes=args.max_body_bytes, api_key=api_key, admin_key=admin_key,
        bundle_root=args.bundle_root,
        inference_threads=args.inference_threads, user_feature=args.user_feature,
        cache_users=args.cache_users, cache_items=args.cache_items,
        history_keep=args.history_keep,
    )
    try:
        limits = ConnectionLimits(args.header_timeout, args.body_timeout, args.max_connections)
    except ValueError as err:
        raise UsageError(f"--{str(err).replace('_', '-')}") from None
    if args.keep_alive_timeout <= 0:
        raise UsageError(f"--keep-alive-timeout must be > 0, got {args.keep_alive_timeout}")
    common: dict[str, Any] = dict(
        host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
        server_header=False, timeout_keep_alive=args.keep_alive_timeout,
    )
    app = create_app(config)  # loads the bundle and opens the store before binding
    if args.workers == 1:
        uvicorn.run(app, http=protocol_class(limits), **common)
        return 0
    # A failing bundle or store has now said so in one line; the workers load their own.
    app.state.service.close()
    del app
    os.environ[SETTINGS_ENV] = settings_env(config, limits, args.threads, kernel_threads,
                                         args.log_level)
    if not supervisor.REUSEPORT:
        # No SO_REUSEPORT (not Linux/BSD): uvicorn's supervisor, one socket for all workers,
        # which hands a burst of connections to whichever worker wakes first.
        print("dinrec serve: warning: no SO_REUSEPORT here; the workers share one listening "
              "socket and may take connections unevenly", file=sys.stderr)
        # A worker loads torch and the bundle before it answers uvicorn's health check: on a
        # busy machine that takes longer than uvicorn's 5 s, which would abort a SIGHUP restart.
        uvicorn.run(APP_FACTORY, factory=True, workers=args.workers, http=PROTOCOL,
                    timeout_worker_healthcheck=WORKER_START_S, **common)
        return 0
    try:
        workers = supervisor.Supervisor(common, args.workers, WORKER_START_S)
    except OSError as err:
        # As uvicorn's single process does on a taken port: one line, STARTUP_FAILURE.
        print(f"dinrec serve: error: cannot bind {supervisor.address(args.host, args.port)}: "
              f"{err.strerror or err}", file=sys.stderr)
        return STARTUP_FAILURE
    uvicorn.Config(APP_FACTORY, factory=True, **common)  # configures uvicorn's loggers
    return workers.run()
