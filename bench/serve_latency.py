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
    python bench/serve_latency.py --baseline-src /tmp/main/src --repeat 3
                                                       # side by side with another tree

Reports p50 / p99 latency, requests/s and errors per concurrency level. With --baseline-src,
a server of that source tree (its `src/` directory, put first on PYTHONPATH) and one of this
tree serve the same bundle and store in alternating runs (baseline, this, baseline, ...;
`--repeat` pairs), and the medians of each and their ratios are printed: on a shared, noisy
machine only runs taken side by side compare.
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

# The demo bundle is the serving tests' fixture (tests/support), importable from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.demo_bundle import DemoSpec, build_demo_bundle, demo_history

from dinrec.serving.stores.sqlite import SQLiteStore

HOST = "127.0.0.1"  # loopback only: the benchmark never sends traffic elsewhere
MAX_REQUESTS_PER_LEVEL = 200_000
SRC = Path(__file__).resolve().parents[1] / "src"  # this tree's package, whatever is installed
Result = dict[str, float]


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
    bundle: Path, store: str, port: int, backend: str, extra: list[str], src: Path = SRC
) -> subprocess.Popen[bytes]:
    """`dinrec serve` from the source tree `src` (first on PYTHONPATH), once it is ready."""
    cmd = [sys.executable, "-m", "dinrec", "serve", str(bundle), "--store", store,
           "--host", HOST, "--port", str(port), "--backend", backend, "--log-level", "warning",
           *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(src), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(cmd, env=env)
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


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (the workers of
    `--workers N`; Linux /proc; NaN elsewhere)."""
    if _stat(pid) is None:
        return float("nan")
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = _stat(current)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        todo += children.get(current, [])
    return total / os.sysconf("SC_CLK_TCK")


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
                server_pid: int = 0) -> Result:
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


def run_server(args: argparse.Namespace, bundle: Path, store: str, candidates: list[str],
               src: Path) -> list[Result]:
    """One server of the tree `src`, driven at each concurrency level, then stopped."""
    port = free_port()
    server = start_server(bundle, store, port, args.backend,
                          ["--inference-threads", str(args.inference_threads),
                           *args.server_arg], src)
    try:
        request = rank_request(port, candidates)
        return [
            asyncio.run(drive(port, request, int(c), args.warmup, args.seconds, server.pid))
            for c in args.concurrency.split(",")
        ]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def show(r: Result, label: str = "") -> str:
    return (f"  {label}concurrency {int(r['concurrency']):>2}: {r['requests_per_s']:7.1f} "
            f"req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  errors "
            f"{int(r['errors'])} ({int(r['requests'])} requests, server CPU "
            f"{r['server_cpu_ms_per_request']:.2f} ms/request)")


def medians(runs: list[list[Result]]) -> list[Result]:
    """Per concurrency level, the median of each number over the runs."""
    return [{key: float(np.median([run[level][key] for run in runs])) for key in runs[0][level]}
            for level in range(len(runs[0]))]


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
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="the src/ directory of another tree (e.g. a `git worktree` of "
                        "main) whose server runs in alternation with this tree's")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="runs (with --baseline-src: alternating pairs); medians printed")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.baseline_src is not None and not (args.baseline_src / "dinrec").is_dir():
        parser.error(f"--baseline-src {args.baseline_src}: no dinrec package in it")
    trees = [("this", SRC)]
    if args.baseline_src is not None:
        trees.insert(0, ("baseline", args.baseline_src.resolve()))
    load_before = os.getloadavg()[0]
    spec = DemoSpec(n_users=100, n_items=10_000, n_categories=100, maxlen=args.maxlen,
                    embedding_dim=16)
    rng = np.random.default_rng(1)
    candidates = [spec.item(int(i)) for i in rng.choice(spec.n_items, args.candidates, False)]
    runs: dict[str, list[list[Result]]] = {name: [] for name, _ in trees}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dinrec-bench-") as tmp:
        bundle, store = prepare(Path(tmp), spec, args.backend)
        for n in range(args.repeat):
            for name, src in trees:
                loads.append(os.getloadavg()[0])
                results = run_server(args, bundle, store, candidates, src)
                runs[name].append(results)
                for r in results:
                    if args.json:
                        print(json.dumps({"tree": name, "run": n, **r}), flush=True)
                    else:
                        print(show(r, f"{name:>8} run {n}: "), flush=True)
    extra = f" {' '.join(args.server_arg)}" if args.server_arg else ""
    print(f"dinrec serve, backend {args.backend}, inference threads {args.inference_threads}"
          f"{extra}, 1 user x {args.candidates} candidates, maxlen {args.maxlen} (full "
          f"history), cpus {os.cpu_count()}, load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (1-min, {min(loads):.2f}-{max(loads):.2f} at "
          "the runs' starts)")
    summary = {name: medians(tree_runs) for name, tree_runs in runs.items()}
    for name, _ in trees:
        for r in summary[name]:
            label = f"median of {args.repeat}, {name}: " if len(runs[name]) > 1 else ""
            print(json.dumps({"tree": name, "median_of": args.repeat, **r}) if args.json
                  else show(r, label))
    if len(trees) > 1:
        for old, new in zip(summary["baseline"], summary["this"], strict=True):
            print(f"  this / baseline, concurrency {int(new['concurrency'])}: req/s x"
                  f"{new['requests_per_s'] / old['requests_per_s']:.2f}, p99 x"
                  f"{new['p99_ms'] / old['p99_ms']:.2f}, server CPU/request x"
                  f"{new['server_cpu_ms_per_request'] / old['server_cpu_ms_per_request']:.2f}")
    return 1 if any(r["errors"] for tree_runs in runs.values() for run in tree_runs
                    for r in run) else 0


if __name__ == "__main__":
    sys.exit(main())
