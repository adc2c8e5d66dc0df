"""Serving fixtures: tiny bundles, a private redis-server, and stores of both kinds."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.demo_bundle import DemoSpec, build_demo_bundle, spread_weights

from dinrec.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat
from dinrec.models import DIN
from dinrec.serving.stores import BehaviorStore, open_store

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)


@pytest.fixture
def anyio_backend() -> str:
    """The async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="session")
def spec() -> DemoSpec:
    return SPEC


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DIN bundle with raw-id vocabularies (user_id, gender, item_id, cate_id)."""
    return build_demo_bundle(tmp_path_factory.mktemp("bundles") / "demo", SPEC, version="v1")


def plain_columns() -> list[Any]:
    """DeepCTR's example columns: no vocabulary, a length input and a dense feature."""
    return [
        SparseFeat("user", 3, embedding_dim=6),
        SparseFeat("gender", 2, embedding_dim=4),
        SparseFeat("item_id", 4, embedding_dim=8),
        SparseFeat("cate_id", 3, embedding_dim=4),
        DenseFeat("pay_score", 1),
        VarLenSparseFeat(SparseFeat("hist_item_id", 4, embedding_dim=8,
                                    embedding_name="item_id"), maxlen=4, length_name="seq_length"),
        VarLenSparseFeat(SparseFeat("hist_cate_id", 3, embedding_dim=4,
                                    embedding_name="cate_id"), maxlen=4, length_name="seq_length"),
    ]


@pytest.fixture
def plain_cols() -> list[Any]:
    return plain_columns()


@pytest.fixture(scope="session")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle without vocab.json: ids are encoded ints, range-checked."""
    model = DIN(plain_columns(), ["item_id", "cate_id"], att_weight_normalization=True)
    spread_weights(model, seed=3)
    path = tmp_path_factory.mktemp("bundles") / "plain"
    model.save(path)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1 for this test session (no persistence)."""
    pytest.importorskip("redis", reason="the Redis store needs the redis package ('serve' extra)")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/install-test-services.sh installs it)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL of each kind (Redis: a key prefix of its own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    base = request.getfixturevalue("redis_url")
    return f"{base}?prefix=t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def store(store_url: str) -> Iterator[BehaviorStore]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()

