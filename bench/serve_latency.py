"""Latency and throughput of `dinrec serve` on loopback: 1 user x 100 candidates, maxlen 50.

Starts the real server (a subprocess on 127.0.0.1, a free port) on a demo bundle and a SQLite
store holding one user with a full 50-behavior history, then drives POST /v1/rank with a
small asyncio HTTP/1.1 keep-alive load generator (pre-built request bytes, so the generator
costs little CPU next to the server on a 2-core machine). Each concurrency level runs for a
fixed time after a warm-up; everything stops by itself.

    python bench/serve_latency.py                      # torch backend, concurrency 1 and 8
    python bench/serve_latency.py --backend onnx --seconds 10
    python bench/serve_latency.py --backend onnx --server-arg=--cache-users=0 \
        --server-arg=--cache-items=0                   # every call reads the store

Reports p50 / p99 latency, requests/s and errors per concurrency level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from dinrec.serving.demo import DemoSpec, build_demo_bundle, demo_history
from dinrec.serving.stores.sqlite import SQLiteStore

HOST = "127.0.0.1"  # loopback only: the benchmark never sends traffic elsewhere
MAX_REQUESTS_PER_LEVEL = 200_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def prepare(folder: Path, spec: DemoSpec, backend: str) -> tuple[Path, str]:
    """A demo bundle (exported to ONNX if asked) and a store with user u0's full history."""
    bundle = build_demo_bundle(folder / "bundle", spec)
    if backend == "onnx":
        from dinrec.serving.onnx_export import export_onnx

        export_onnx(bundle)
    store_path = folder / "store.db"
    store = SQLiteStore(store_path)
    history = demo_history(spec, 0)
    store.replace_users(
        {"u0": [(item, cate, float(t)) for t, (item, cate) in enumerate(history)]},
        {"u0": {"gender": "f"}},
    )
    store.put_items({spec.item(i): spec.category_of(spec.item(i)) for i in range(spec.n_items)})
    store.close()
    return bundle, f"sqlite:///{store_path}"


def start_server(
    bundle: Path, store: str, port: int, backend: str, extra: list[str]
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "dinrec", "serve", str(bundle), "--store", store,
           "--host", HOST, "--port", str(port), "--backend", backend, "--log-level", "warning",
           *extra]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready in 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rank_request(port: int, candidates: list[str]) -> bytes:
    body = json.dumps({"user_id": "u0", "candidates": candidates}).encode()
    head = (f"POST /v1/rank HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def one_client(
    port: int, request: bytes, stop_at: float, record_from: float, latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < stop_at and len(latencies) < MAX_REQUESTS_PER_LEVEL:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if head[9:12] != b"200":
                errors.append(head.split(b"\r\n", 1)[0].decode())
            elif started >= record_from:
                latencies.append(elapsed)
    except (OSError, asyncio.IncompleteReadError) as err:
        errors.append(f"{type(err).__name__}: {err}")
    finally:
        writer.close()


async def drive(port: int, request: bytes, concurrency: int, warmup: float, seconds: float,
                server_pid: int = 0) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + seconds
    cpu: list[float] = []

    async def sample_cpu() -> None:
        await asyncio.sleep(max(0.0, record_from - time.perf_counter()))
        cpu.append(cpu_seconds(server_pid))
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu.append(cpu_seconds(server_pid))

    await asyncio.gather(sample_cpu(), *(
        one_client(port, request, stop_at, record_from, latencies, errors)
        for _ in range(concurrency)
    ))
    ms = np.asarray(latencies) * 1e3
    return {
        "concurrency": concurrency, "requests": len(ms), "errors": len(errors),
        "requests_per_s": len(ms) / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        # Server CPU per request: what one core could serve, whatever else shares the machine.
        "server_cpu_ms_per_request": (cpu[1] - cpu[0]) * 1e3 / max(len(ms), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--inference-threads", type=int, default=2,
                        help="the server's --inference-threads")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--maxlen", type=int, default=50)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra `dinrec serve` argument (repeatable), e.g. "
                        "--server-arg=--cache-users=0")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    spec = DemoSpec(n_users=100, n_items=10_000, n_categories=100, maxlen=args.maxlen,
                    embedding_dim=16)
    rng = np.random.default_rng(1)
    candidates = [spec.item(int(i)) for i in rng.choice(spec.n_items, args.candidates, False)]
    with tempfile.TemporaryDirectory(prefix="dinrec-bench-") as tmp:
        bundle, store = prepare(Path(tmp), spec, args.backend)
        port = free_port()
        server = start_server(bundle, store, port, args.backend,
                              ["--inference-threads", str(args.inference_threads),
                               *args.server_arg])
        try:
            request = rank_request(port, candidates)
            results = [
                asyncio.run(drive(port, request, int(c), args.warmup, args.seconds, server.pid))
                for c in args.concurrency.split(",")
            ]
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    extra = f" {' '.join(args.server_arg)}" if args.server_arg else ""
    print(f"dinrec serve, backend {args.backend}, inference threads {args.inference_threads}"
          f"{extra}, 1 user x {args.candidates} candidates, maxlen {args.maxlen} (full "
          f"history), cpus {os.cpu_count()}, load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"  concurrency {r['concurrency']:>2}: {r['requests_per_s']:7.1f} req/s  "
                  f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                  f"errors {r['errors']} ({r['requests']} requests, server CPU "
                  f"{r['server_cpu_ms_per_request']:.2f} ms/request)")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
