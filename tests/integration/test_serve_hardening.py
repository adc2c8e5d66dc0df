"""`dinrec serve` over real HTTP on loopback, refusing what used to break it: a NaN bundle on
reload, reloads without the admin key or from outside the bundle root."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

httpx = pytest.importorskip("httpx", reason="serving tests need the 'serve' extra")
pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")

from tests.integration.serve_process import Server, serving  # noqa: E402
from tests.unit.serving.bundles import poisoned_copy  # noqa: E402

from dinrec.serving.demo import DemoSpec, build_demo_bundle  # noqa: E402
from dinrec.serving.scorer import bundle_version  # noqa: E402

SPEC = DemoSpec(n_users=20, n_items=60, n_categories=6, maxlen=8, embedding_dim=8)
ADMIN_KEY = "hardening-admin-key"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
RANK = {"user_id": "u1", "candidates": ["i1", "i2", "i3"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hardening")
    bundle = build_demo_bundle(folder / "bundles" / "v1", SPEC)
    poisoned_copy(bundle, folder / "bundles" / "nan")
    build_demo_bundle(folder / "elsewhere", SPEC)  # a bundle outside the root
    with serving(bundle, folder, ["--admin-key-env", "HARDENING_ADMIN_KEY"],
                 {"HARDENING_ADMIN_KEY": ADMIN_KEY}) as running:
        yield running


def test_reload_of_a_nan_bundle_is_refused_and_ranking_goes_on(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = http.post("/v1/rank", json=RANK).json()
        r = http.post("/admin/reload", json={"bundle": "nan"}, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "bundle" and "non-finite scores" in r.json()["error"]
        for _ in range(3):
            after = http.post("/v1/rank", json=RANK)
            assert after.status_code == 200, after.text
            assert after.json() == before
        assert before["model_version"] == bundle_version(server.bundle)


def test_reload_needs_the_admin_key_and_stays_in_the_bundle_root(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/admin/reload", json={"bundle": "v1"}).status_code == 401
        for name in ("../elsewhere", str(server.folder / "elsewhere"), "/etc"):
            r = http.post("/admin/reload", json={"bundle": name}, headers=ADMIN)
            assert r.status_code == 422, name
            assert str(server.folder) not in r.text and "/etc" not in r.text
        ok = http.post("/admin/reload", json={"bundle": "v1"}, headers=ADMIN)
        assert ok.status_code == 200 and ok.json()["bundle"] == "v1"
        info = http.get("/v1/model").json()
        assert info["bundle"] == "v1" and str(server.folder) not in str(info)
