"""Dataset download, against a local HTTP server on 127.0.0.1 only (never the real network)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dinrec.data import download
from dinrec.data.download import ChecksumError, Dataset, RemoteFile, download_dataset
from dinrec.data.readers import read_log


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without printing a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, folder it serves, request paths seen) for a server on 127.0.0.1."""
    # A proxy from the environment would otherwise carry loopback requests off the machine.
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                     "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    seen: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/files", folder, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def _register(monkeypatch, name: str, *files: RemoteFile, root: str = "") -> None:
    monkeypatch.setitem(download.DATASETS, name, Dataset(files, root=root))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zip_is_downloaded_verified_and_extracted(tmp_path, served, monkeypatch) -> None:
    base_url, folder, seen = served
    (folder / "files").mkdir()
    archive = _zip(folder / "files" / "ml-tiny.zip",
                   {"ml-tiny/u.data": "1\t2\t3\t4\n", "ml-tiny/README": "hi"})
    _register(monkeypatch, "tiny", RemoteFile(
        "https://example.invalid/ml-tiny.zip", sha256=_sha256(archive),
        size=archive.stat().st_size, extract=True), root="ml-tiny")
    cache = tmp_path / "cache"
    result = download_dataset("tiny", cache, base_url=base_url)
    assert result == cache / "tiny" / "ml-tiny"
    assert (result / "u.data").read_text() == "1\t2\t3\t4\n"
    assert len(read_log("movielens", result)) == 1  # the folder is what the reader takes
    assert seen == ["/files/ml-tiny.zip"]
    assert download_dataset("tiny", cache, base_url=base_url) == result
    assert seen == ["/files/ml-tiny.zip"]  # cached: no second request
    assert not list((cache / "tiny").glob("*.part")) and not list(
        (cache / "tiny").glob(".extract-*"))


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, served, monkeypatch) -> None:
    base_url, folder, _ = served
    (folder / "reviews.json.gz").write_bytes(gzip.compress(b'{"asin": "a"}\n'))
    _register(monkeypatch, "bad", RemoteFile("https://example.invalid/reviews.json.gz",
                                             sha256="0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="SHA-256"):
        download_dataset("bad", cache, base_url=base_url.rsplit("/", 1)[0])
    assert list((cache / "bad").iterdir()) == []


def test_md5_and_size_verify_when_no_sha256_is_known(tmp_path, served, monkeypatch) -> None:
    base_url, folder, _ = served
    data = gzip.compress(b'{"asin": "a"}\n')
    (folder / "meta.json.gz").write_bytes(data)
    url = "https://example.invalid/meta.json.gz"
    good = RemoteFile(url, sha256=None, size=len(data), md5=hashlib.md5(data).hexdigest())
    _register(monkeypatch, "md5", good)
    root = base_url.rsplit("/", 1)[0]
    path = download_dataset("md5", tmp_path / "ok", base_url=root)
    assert (path / "meta.json.gz").read_bytes() == data
    _register(monkeypatch, "short", RemoteFile(url, sha256=None, size=len(data) + 1, md5="x"))
    with pytest.raises(ChecksumError, match="bytes"):
        download_dataset("short", tmp_path / "bad", base_url=root)
    assert list((tmp_path / "bad" / "short").iterdir()) == []


def test_file_without_checksum_needs_verify_false(tmp_path, served, monkeypatch) -> None:
    base_url, folder, seen = served
    (folder / "raw.csv").write_text("u,i\n")
    _register(monkeypatch, "nosum", RemoteFile("https://example.invalid/raw.csv", sha256=None))
    root = base_url.rsplit("/", 1)[0]
    with pytest.raises(ValueError, match="verify=False"):
        download_dataset("nosum", tmp_path, base_url=root)
    assert seen == []
    path = download_dataset("nosum", tmp_path, base_url=root, verify=False)
    assert (path / "raw.csv").read_text() == "u,i\n"


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_zip_path_traversal_is_rejected(tmp_path, served, monkeypatch, member) -> None:
    base_url, folder, _ = served
    archive = _zip(folder / "evil.zip", {"fine.txt": "x", member: "pwned"})
    _register(monkeypatch, "evil", RemoteFile("https://example.invalid/evil.zip",
                                              sha256=_sha256(archive), extract=True))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="refusing member"):
        download_dataset("evil", cache, base_url=base_url.rsplit("/", 1)[0])
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()
    assert not (cache / "evil" / "fine.txt").exists()


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: movielens-100k"):
        download_dataset("imagenet")


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DINREC_CACHE", str(tmp_path / "env-cache"))
    assert download.default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv("DINREC_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.default_cache_dir() == tmp_path / ".cache" / "dinrec"


def test_official_table_names_https_urls_and_known_digests() -> None:
    for name, dataset in download.DATASETS.items():
        for remote in dataset.files:
            assert remote.url.startswith("https://"), name
            assert remote.sha256 is not None or remote.md5 is not None, name
    ml100k = download.DATASETS["movielens-100k"].files[0]
    assert ml100k.filename == "ml-100k.zip" and ml100k.size == 4924029


def test_non_http_base_url_is_refused(tmp_path, monkeypatch) -> None:
    _register(monkeypatch, "local", RemoteFile("https://example.invalid/a.zip", sha256="0" * 64))
    with pytest.raises(ValueError, match="only http"):
        download_dataset("local", tmp_path, base_url="file:///etc")
