"""/admin/reload: only with its own key, only from the bundle root, errors naming no server
paths; GET /v1/model shows the bundle relative to the root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

import httpx
from tests.support.demo_bundle import DemoSpec, build_demo_bundle
from tests.unit.serving.asgi import in_process
from tests.unit.serving.bundles import poisoned_copy

from dinrec.serving.scorer import bundle_version
from dinrec.serving.service import ServeConfig

pytestmark = pytest.mark.anyio
API = {"X-API-Key": "rank-key"}
ADMIN = {"X-Admin-Key": "admin-key"}
BODY = {"user_id": "u1", "candidates": ["i1", "i2"]}



@pytest.fixture
def root(tmp_path: Path, spec: DemoSpec) -> Path:
    """A bundle root holding two bundles, v1 (served) and v2."""
    build_demo_bundle(tmp_path / "root" / "v1", spec)
    build_demo_bundle(tmp_path / "root" / "v2", DemoSpec(**{**spec.__dict__, "seed": 5}))
    return tmp_path / "root"


def _config(root: Path, tmp_path: Path, admin_key: str | None = "admin-key") -> ServeConfig:
    return ServeConfig(str(root / "v1"), store=f"sqlite:///{tmp_path / 's.db'}",
                       api_key="rank-key", admin_key=admin_key)


@pytest.fixture
async def client(root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(_config(root, tmp_path)) as (c, _):
        yield c


async def test_reload_swaps_to_a_bundle_named_relative_to_the_root(
    client: httpx.AsyncClient, root: Path
) -> None:
    v1, v2 = bundle_version(root / "v1"), bundle_version(root / "v2")
    assert (await client.post("/v1/rank", json=BODY, headers=API)).json()["model_version"] == v1
    swapped = await client.post("/admin/reload", json={"bundle": "v2"}, headers=ADMIN)
    assert swapped.status_code == 200, swapped.text
    assert (swapped.json()["previous_version"], swapped.json()["model_version"]) == (v1, v2)
    assert swapped.json()["bundle"] == "v2"
    assert (await client.post("/v1/rank", json=BODY, headers=API)).json()["model_version"] == v2
    again = await client.post("/admin/reload", headers=ADMIN)  # re-reads the bundle served
    assert again.json()["model_version"] == v2
    info = (await client.get("/v1/model", headers=API)).json()
    assert info["bundle"] == "v2"
    assert str(root) not in (await client.get("/v1/model", headers=API)).text


async def test_reload_needs_the_admin_key_not_the_ranking_key(client: httpx.AsyncClient) -> None:
    for headers in ({}, API, {"X-Admin-Key": "wrong"}, {"Authorization": "Bearer admin-key"}):
        response = await client.post("/admin/reload", json={"bundle": "v2"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["field"] == "X-Admin-Key"
    # The admin key is not a ranking key either.
    assert (await client.post("/v1/rank", json=BODY, headers=ADMIN)).status_code == 401


async def test_no_admin_routes_without_an_admin_key(root: Path, tmp_path: Path) -> None:
    async with in_process(_config(root, tmp_path, admin_key=None)) as (client, _):
        response = await client.post("/admin/reload", json={"bundle": "v2"}, headers=API)
        assert response.status_code == 404
        paths = (await client.get("/openapi.json", headers=API)).json()["paths"]
        assert "/admin/reload" not in paths


@pytest.mark.parametrize("name", ["../outside", "/etc", "v1/../../outside", "/"])
async def test_reload_outside_the_root_is_refused_without_saying_what_exists(
    client: httpx.AsyncClient, root: Path, tmp_path: Path, spec: DemoSpec, name: str
) -> None:
    build_demo_bundle(tmp_path / "outside", spec)  # a real bundle, but not in the root
    response = await client.post("/admin/reload", json={"bundle": name}, headers=ADMIN)
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "bundle" and "inside the server's bundle root" in body["error"]
    assert str(tmp_path) not in response.text


async def test_reload_errors_name_paths_relative_to_the_root(
    client: httpx.AsyncClient, root: Path, tmp_path: Path
) -> None:
    (root / "empty").mkdir()
    poisoned_copy(root / "v1", root / "nan")
    for name, said in [("missing", "no bundle directory 'missing'"),
                       ("empty", "empty is not a dinrec bundle: missing"),
                       ("nan", "non-finite scores")]:
        response = await client.post("/admin/reload", json={"bundle": name}, headers=ADMIN)
        assert response.status_code == 422, name
        assert response.json()["field"] == "bundle"
        assert said in response.json()["error"], response.text
        assert str(tmp_path) not in response.text, name
    served = await client.post("/v1/rank", json=BODY, headers=API)
    assert served.json()["model_version"] == bundle_version(root / "v1")
    metrics = (await client.get("/metrics", headers=API)).text
    assert 'dinrec_model_reloads_total{result="failed"} 3' in metrics


def test_admin_key_must_differ_from_the_api_key(root: Path) -> None:
    with pytest.raises(ValueError, match="admin_key must differ from api_key"):
        ServeConfig(str(root / "v1"), api_key="same", admin_key="same")
