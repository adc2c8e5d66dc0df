"""A SQLite store whose file was deleted or replaced says so: not ready, and no write is
acknowledged into a file that is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dinrec.serving.service import RankingService, ServeConfig
from dinrec.serving.stores import Behavior
from dinrec.serving.stores.sqlite import SQLiteStore, StoreFileGone

EVENT = Behavior("u", "i1", "c1", 1.0)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_deleted_file_fails_ping_and_writes(store: SQLiteStore) -> None:
    store.ping()
    store.append([EVENT], keep=8)
    _remove_db(store.path)
    with pytest.raises(StoreFileGone, match=r"store file store\.db was deleted"):
        store.ping()
    with pytest.raises(StoreFileGone):
        store.append([EVENT], keep=8)
    store.close()


def test_a_replaced_file_fails_ping(store: SQLiteStore, tmp_path: Path) -> None:
    other = SQLiteStore(tmp_path / "other.db")
    other.close()
    os.replace(tmp_path / "other.db", store.path)
    with pytest.raises(StoreFileGone, match="replaced by another file"):
        store.ping()
    store.close()


def test_readiness_says_the_file_is_gone(demo_bundle: Path, tmp_path: Path) -> None:
    service = RankingService(ServeConfig(str(demo_bundle),
                                         store=f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        assert service.readiness()[0] is True
        _remove_db(tmp_path / "store.db")
        ready, details = service.readiness()
        assert ready is False and "was deleted" in details["reason"]
        assert str(tmp_path) not in str(details)  # /readyz needs no key: no server paths
    finally:
        service.close()
