"""The serving sub-commands fail with one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinrec.cli.main import build_parser, main


def test_serve_export_and_store_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "b"])
    assert (args.host, args.port, args.max_candidates, args.backend, args.threads) == (
        "127.0.0.1", 8000, 1000, "torch", 1)
    assert (args.cache_users, args.cache_items) == (10_000, 200_000)
    assert parser.parse_args(["export", "b", "--format", "onnx"]).format == "onnx"
    assert parser.parse_args(["store", "info", "--store", "sqlite:///x"]).action == "info"


def test_serve_with_an_unset_api_key_variable_exits_2(
    demo_bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINREC_NO_SUCH_KEY", raising=False)
    assert main(["serve", str(demo_bundle), "--api-key-env", "DINREC_NO_SUCH_KEY"]) == 2
    assert "DINREC_NO_SUCH_KEY" in capsys.readouterr().err


def test_serve_of_a_missing_bundle_exits_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", str(tmp_path / "nope"), "--store", f"sqlite:///{tmp_path / 's.db'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no model bundle directory" in err and "Traceback" not in err


def test_export_of_a_missing_bundle_exits_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "no model bundle directory" in capsys.readouterr().err


def test_serve_with_a_negative_cache_size_exits_2(
    demo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", str(demo_bundle), "--store", f"sqlite:///{tmp_path / 's.db'}",
                 "--cache-users", "-1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cache_users must be >= 0, got -1" in err and "Traceback" not in err


def test_serve_has_connection_limits_with_defaults() -> None:
    args = build_parser().parse_args(["serve", "b"])
    assert (args.header_timeout, args.body_timeout, args.keep_alive_timeout,
            args.max_connections) == (10.0, 30.0, 5.0, 1000)


@pytest.mark.parametrize(("flag", "said"), [
    ("--header-timeout", "--header-timeout must be > 0, got 0"),
    ("--max-connections", "--max-connections must be > 0, got 0"),
    ("--keep-alive-timeout", "--keep-alive-timeout must be > 0, got 0"),
    ("--kernel-threads", "--kernel-threads must be >= 1, got 0"),
])
def test_serve_refuses_a_zero_connection_or_thread_limit(
    demo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, said: str
) -> None:
    code = main(["serve", str(demo_bundle), "--store", f"sqlite:///{tmp_path / 's.db'}",
                 flag, "0"])
    assert code == 2
    assert said in capsys.readouterr().err


def test_the_unit_kernel_threads_default_to_the_cpus_shared_among_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dinrec.cli.serve import set_kernel_threads
    from dinrec.serving import unit_kernel

    monkeypatch.setattr(unit_kernel, "available_cpus", lambda: 4)
    monkeypatch.setattr(unit_kernel.budget, "limit", 4)  # restored after the test
    assert (set_kernel_threads(None, 1), unit_kernel.budget.limit) == (4, 4)
    assert (set_kernel_threads(None, 3), unit_kernel.budget.limit) == (1, 1)
    assert (set_kernel_threads(None, 8), unit_kernel.budget.limit) == (1, 1)
    assert (set_kernel_threads(2, 8), unit_kernel.budget.limit) == (2, 2)

