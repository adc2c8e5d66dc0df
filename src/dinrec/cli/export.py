"""`dinrec export BUNDLE --format onnx`: an ONNX graph (+ weights file) inside the bundle."""

from __future__ import annotations

import argparse
from typing import Any

from dinrec.cli.main import SERVE_EXTRA_HINT, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export a bundle's model for another runtime (ONNX)",
        description="Write BUNDLE/onnx/model.onnx and model.onnx.data (the weights), for "
        "`dinrec serve BUNDLE --backend onnx`. The graph is the serving forward pass (user "
        "side once per request) and is checked against torch after export.",
    )
    parser.add_argument("bundle", help="model bundle directory")
    parser.add_argument("--format", choices=("onnx",), default="onnx")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the exported graph once against torch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with one line if absent)
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError as err:
        raise UsageError(
            f"ONNX export needs the 'serve' extra ({err.name} is missing): "
            + SERVE_EXTRA_HINT
        ) from None
    from dinrec.serving.onnx_export import export_onnx

    folder = export_onnx(args.bundle, check=not args.no_check)
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    print(f"wrote {folder} ({files})")
    return 0
