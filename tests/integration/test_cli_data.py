"""`dinrec data ...` through the real CLI in a fresh process (python -m dinrec)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                    "ALL_PROXY")


def _env() -> dict[str, str]:
    """The child's environment: the source tree importable, no proxy for loopback requests."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def dinrec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dinrec", *args], capture_output=True,
                          text=True, env=_env(), cwd=cwd, timeout=120)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_build_ml100k_rating_prints_summary_and_writes_counts(shared_file, tmp_path) -> None:
    source = shared_file("ml-100k")
    out = tmp_path / "ml100k"
    result = dinrec("data", "build", "--source", "movielens", "--path", str(source),
                    "--protocol", "rating", "--out", str(out), "--maxlen", "50")
    assert result.returncode == 0, result.stderr
    printed = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    printed = {k: v.strip() for k, v in printed.items()}
    assert printed["samples"].startswith("100000 (train ")
    assert printed["users"] == "943"
    assert printed["items"] == "1682"
    rate = float(printed["positive rate"])
    assert rate == pytest.approx(55375 / 100000, abs=1e-4)  # ratings of 4 and 5
    assert printed["mean history length"].endswith("(maxlen 50)")

    meta = json.loads((out / "dataset.json").read_text())
    assert sum(c["samples"] for c in meta["counts"].values()) == 100000
    assert sum(c["positives"] for c in meta["counts"].values()) == 55375
    assert meta["protocol"] == "rating" and meta["maxlen"] == 50

    info = dinrec("data", "info", str(out))
    assert info.returncode == 0, info.stderr
    assert "total:            100000 samples" in info.stdout
    assert f"train:            {meta['counts']['train']['samples']} samples" in info.stdout


def test_build_with_a_bad_path_is_one_line_naming_it(tmp_path) -> None:
    missing = tmp_path / "no-such-ml-100k"
    result = dinrec("data", "build", "--source", "movielens", "--path", str(missing),
                    "--protocol", "rating", "--out", str(tmp_path / "out"))
    _assert_one_line_error(result, str(missing))
    assert not (tmp_path / "out").exists()


def test_build_with_an_unknown_option_is_one_line_naming_it(tmp_path) -> None:
    result = dinrec("data", "build", "--source", "synthetic", "--protocol", "click-log",
                    "--out", str(tmp_path / "out"), "--option", "n_user=30")
    _assert_one_line_error(result, "'n_user'")


def test_build_synthetic_with_options(tmp_path) -> None:
    out = tmp_path / "syn"
    result = dinrec("data", "build", "--source", "synthetic", "--protocol", "click-log",
                    "--out", str(out), "--maxlen", "8", "--test-fraction", "0.25",
                    "--option", "n_users=25", "--option", "n_items=150",
                    "--option", "n_categories=5", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "users:               25" in result.stdout
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["options"]["split"]["test_fraction"] == 0.25 and meta["maxlen"] == 8


def test_info_on_a_folder_without_a_dataset_is_one_line(tmp_path) -> None:
    _assert_one_line_error(dinrec("data", "info", str(tmp_path)), "dataset.json")


# ----- download, against a server on 127.0.0.1 only ----------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) for a server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_with_a_wrong_archive_fails_checksum_and_leaves_nothing(served,
                                                                       tmp_path) -> None:
    base_url, folder = served
    with zipfile.ZipFile(folder / "ml-100k.zip", "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t2\t3\t4\n")  # not GroupLens' archive
    cache = tmp_path / "cache"
    result = dinrec("data", "download", "movielens-100k", "--cache-dir", str(cache),
                    "--base-url", base_url, "--no-progress")
    _assert_one_line_error(result, "ml-100k.zip", "expected 4924029 bytes")
    assert list((cache / "movielens-100k").iterdir()) == []


def test_download_registered_archive_prints_the_folder(served, tmp_path) -> None:
    """The real CLI in a fresh process, with a tiny dataset registered before main() runs."""
    base_url, folder = served
    with zipfile.ZipFile(folder / "ml-tiny.zip", "w") as archive:
        archive.writestr("ml-tiny/u.data", "1\t2\t3\t4\n")
    digest = hashlib.sha256((folder / "ml-tiny.zip").read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    script = (
        "import sys\n"
        "from dinrec.data import download\n"
        "from dinrec.cli.main import main\n"
        "download.DATASETS['tiny'] = download.Dataset((download.RemoteFile(\n"
        f"    'https://example.invalid/ml-tiny.zip', sha256={digest!r}, extract=True),),\n"
        "    root='ml-tiny')\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["data", "download", "tiny", "--cache-dir", str(cache), "--base-url", base_url]
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(cache / "tiny" / "ml-tiny")
    assert (cache / "tiny" / "ml-tiny" / "u.data").read_text() == "1\t2\t3\t4\n"


def test_download_from_an_unreachable_server_is_one_line(tmp_path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens on this port now
    result = dinrec("data", "download", "movielens-100k", "--cache-dir", str(tmp_path),
                    "--base-url", f"http://127.0.0.1:{port}", "--no-progress")
    _assert_one_line_error(result, "download of movielens-100k failed")
