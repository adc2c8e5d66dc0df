"""`dinrec serve --workers N`: what each worker process serves, sharing the store.

The supervisor (supervisor.py) spawns the workers and each builds its app here, so the
settings travel in an environment variable the parent sets: the ServeConfig and the
ConnectionLimits as JSON. Each worker loads the bundle, opens the store and keeps its own
rank cache; the store's versions (rank_cache.py) keep every worker's cache exact whichever
worker took a user's events, as for separate servers. APP_FACTORY and PROTOCOL name them for
uvicorn's own supervisor, the fallback where there is no SO_REUSEPORT.

SIGHUP to the parent replaces the workers one at a time, each new one loading the bundle
afresh: the way to reload with several workers (an HTTP reload would reach only the one
worker that took the request, so there are no admin routes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from fastapi import FastAPI

from dinrec.serving import unit_kernel
from dinrec.serving.http.app import create_app
from dinrec.serving.http.connections import ConnectionLimits, LimitedHttpToolsProtocol
from dinrec.serving.service import ServeConfig

SETTINGS_ENV = "DINREC_SERVE_WORKER_SETTINGS"
APP_FACTORY = "dinrec.serving.http.workers:worker_app"
PROTOCOL = "dinrec.serving.http.workers:WorkerProtocol"


class WorkerProtocol(LimitedHttpToolsProtocol):
    """The connection limits of a worker: set by worker_app before it serves."""


def settings_env(config: ServeConfig, limits: ConnectionLimits, threads: int,
                 kernel_threads: int, log_level: str) -> str:
    """The JSON the parent hands its workers in SETTINGS_ENV."""
    return json.dumps({"config": dataclasses.asdict(config),
                       "limits": dataclasses.asdict(limits), "threads": threads,
                       "kernel_threads": kernel_threads, "log_level": log_level})


def worker_app() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process)."""
    import torch

    raw = os.environ.get(SETTINGS_ENV)
    if raw is None:
        raise RuntimeError(f"{SETTINGS_ENV} is unset: worker_app runs under `dinrec serve "
                           "--workers N`, which sets it")
    settings = json.loads(raw)
    WorkerProtocol.limits = ConnectionLimits(**settings["limits"])
    torch.set_num_threads(int(settings["threads"]))
    unit_kernel.budget.limit = int(settings["kernel_threads"])
    logging.basicConfig(level=str(settings["log_level"]).upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    return create_app(ServeConfig(**settings["config"]))
