"""Where a rank call's CPU goes, by phase, without HTTP: 1 user x 100 candidates, maxlen 50.

The same demo bundle and store as bench/serve_latency.py, a RankingService in this process
(one torch / ONNX Runtime thread, as `dinrec serve` runs), and the thread CPU clock around
each phase of a rank call, from the request's bytes to the response's:

    parse      RankRequest.model_validate_json (what RankRoute does with the body)
    versions   the store's versions read (SQLite, one SELECT)
    forward    the backend's forward pass (Scorer.backend.logits)
    other      the rest of RankingService.rank: rank cache lookups, candidate arrays,
               probabilities, ordering, the result's dicts
    response   the response body (rank_route.dumps, orjson)

What the server adds around these (uvicorn's parsing and writing, the Guard middleware, the
event loop, the hand-off to an inference thread) is the server CPU per request that
serve_latency.py reports minus this total.

    python bench/serve_phases.py                  # torch backend
    python bench/serve_phases.py --backend onnx
    PYTHONPATH=/tmp/main/src python bench/serve_phases.py   # another tree's package

Each phase is the median over --repeat blocks of --requests calls (ms per call).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import prepare  # this folder is not a package
from tests.support.demo_bundle import DemoSpec

import dinrec
from dinrec.serving.http.rank_route import dumps
from dinrec.serving.http.schemas import RankRequest
from dinrec.serving.service import RankingService, ServeConfig

PHASES = ("parse", "versions", "forward", "other", "response")


def timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """`fn`, adding the thread CPU seconds of each call to spent[0]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.thread_time() - started
    return wrapper


def block(service: RankingService, body: bytes, n: int) -> dict[str, float]:
    """Per phase, ms of thread CPU per rank call, over n calls."""
    forward, versions = [0.0], [0.0]
    backend, store = service.scorer.backend, service.store
    saved = backend.logits, store.versions
    backend.logits = timed(saved[0], forward)  # type: ignore[method-assign]
    store.versions = timed(saved[1], versions)  # type: ignore[method-assign]
    parse = rank = response = 0.0
    try:
        for _ in range(n):
            t0 = time.thread_time()
            request = RankRequest.model_validate_json(body)
            t1 = time.thread_time()
            result = service.rank(request)
            t2 = time.thread_time()
            dumps(result)
            t3 = time.thread_time()
            parse, rank, response = parse + t1 - t0, rank + t2 - t1, response + t3 - t2
    finally:
        backend.logits, store.versions = saved  # type: ignore[method-assign]
    spent = {"parse": parse, "versions": versions[0], "forward": forward[0],
             "other": rank - versions[0] - forward[0], "response": response}
    return {name: seconds * 1e3 / n for name, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--maxlen", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300, help="rank calls per block")
    parser.add_argument("--repeat", type=int, default=5, help="blocks; medians printed")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `dinrec serve --threads 1`
    spec = DemoSpec(n_users=100, n_items=10_000, n_categories=100, maxlen=args.maxlen,
                    embedding_dim=16)
    rng = np.random.default_rng(1)
    candidates = [spec.item(int(i)) for i in rng.choice(spec.n_items, args.candidates, False)]
    body = json.dumps({"user_id": "u0", "candidates": candidates}).encode()
    with tempfile.TemporaryDirectory(prefix="dinrec-phases-") as tmp:
        bundle, store = prepare(Path(tmp), spec, args.backend)
        service = RankingService(ServeConfig(str(bundle), store=store, backend=args.backend))
        try:
            block(service, body, 30)  # warm: the first calls fill the rank cache
            blocks = [block(service, body, args.requests) for _ in range(args.repeat)]
        finally:
            service.close()
    medians = {name: float(np.median([b[name] for b in blocks])) for name in PHASES}
    medians["total"] = sum(medians.values())
    if args.json:
        print(json.dumps({"backend": args.backend, **medians}))
        return 0
    print(f"rank call phases, backend {args.backend}, dinrec from {Path(dinrec.__file__).parent}"
          f", 1 user x {args.candidates} candidates, maxlen {args.maxlen}, load average "
          f"{os.getloadavg()[0]:.2f}; ms of thread CPU per call, median of {args.repeat} x "
          f"{args.requests}")
    for name in (*PHASES, "total"):
        print(f"  {name:9s} {medians[name]:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
