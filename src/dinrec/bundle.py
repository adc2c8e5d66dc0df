"""The deployable bundle: a directory of JSON and safetensors weights (no pickle).

Layout:
    manifest.json       format name and version, model class, dinrec / torch versions
    schema.json         the feature columns and history_feature_list
    model_config.json   the ModelConfig
    weights.safetensors the state_dict (parameters and Dice / BatchNorm moving statistics)
    vocab.json          optional: raw id -> encoded id per feature, for scoring raw ids

Loading executes no code from the bundle: JSON is parsed, tensors are read by safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dinrec.version import __version__

FORMAT = "dinrec-bundle"
FORMAT_VERSION = 1
REQUIRED_FILES = ("manifest.json", "schema.json", "model_config.json", "weights.safetensors")
# What a model version digests: everything that changes a score. Of the manifest only the
# field that does (its history_groups: which stored behavior types feed each history); its
# label, dinrec / torch versions and extras do not.
VERSIONED_FILES = ("schema.json", "model_config.json", "weights.safetensors", "vocab.json")

# The classes a manifest's model_class may name, by class name. The model classes register
# themselves (dinrec.models registers DIN and EmbeddingMLP), so the format imports no model
# module: import dinrec.models (or use dinrec.load_model) before loading a bundle.
MODEL_CLASSES: dict[str, Any] = {}


def register_model_class(cls: type[Any]) -> type[Any]:
    """Let bundles name `cls` as their model_class; a class decorator.

    The class needs `from_schema(schema, config)` returning a model in the state a bundle's
    weights load into.
    """
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def swap_directory(tmp: Path, target: Path) -> None:
    """Move a fully written directory `tmp` to `target`, replacing what was there.

    The old directory is moved aside first, so a reader sees either the old or the new
    directory, never a half-written one.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_finite(state: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming the first tensor holding NaN or inf: such a bundle would
    score every request as NaN, so it is never written."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"weights: {name} holds {bad} non-finite value(s) (NaN or inf); "
                "refusing to save a model that cannot score"
            )


def save_model(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    vocab: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    history_behaviors: dict[str, list[str]] | None = None,
) -> Path:
    """Write `model` as a bundle directory at `path`, replacing it atomically.

    Args:
        model: a DIN / EmbeddingMLP (any InterestNetwork).
        path: target directory.
        vocab: optional vocabulary JSON (feature -> {raw id: encoded id}).
        extra: optional JSON-able metadata stored in the manifest under "extra".
        history_behaviors: which behavior types feed each history ("" for
            history_feature_list's, else the history group's name), e.g. {"": ["pv"],
            "buy": ["buy", "cart"]}: recorded in the manifest's "history_groups", which
            serving reads to route typed events (dinrec.serving.behavior_feeds).
    """
    from dinrec.history_groups import MANIFEST_KEY, history_manifest
    from dinrec.models.network import InterestNetwork

    if not isinstance(model, InterestNetwork):
        raise ValueError(f"save_model needs a dinrec model, got {type(model).__name__}")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "dinrec_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "extra": extra or {},
    }
    if history_behaviors is not None or model.schema.history_groups:
        manifest[MANIFEST_KEY] = history_manifest(model.schema.groups, history_behaviors)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_json(tmp / "manifest.json", manifest)
        _write_json(tmp / "schema.json", model.schema.to_dict())
        _write_json(tmp / "model_config.json", model.config.to_dict())
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        check_finite(state)
        save_file(state, str(tmp / "weights.safetensors"))
        if vocab is not None:
            _write_json(tmp / "vocab.json", vocab)
        swap_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's manifest, checked for format and version."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no model bundle directory at {root}")
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        raise ValueError(f"{root} is not a dinrec bundle: missing {missing}")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root}/manifest.json: format is {manifest.get('format')!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{root}: bundle format_version {manifest.get('format_version')} is not supported "
            f"(this dinrec reads {FORMAT_VERSION})"
        )
    return dict(manifest)


def load_model(path: str | os.PathLike[str]) -> Any:
    """Rebuild a model from a bundle directory alone; returned in eval mode, not compiled."""
    from dinrec.models.config import ModelConfig
    from dinrec.schema import FeatureSchema

    root = Path(path)
    manifest = read_manifest(root)
    cls_name = manifest.get("model_class")
    if cls_name not in MODEL_CLASSES:
        hint = "" if MODEL_CLASSES else " (none registered: import dinrec.models first)"
        raise ValueError(
            f"{root}: unknown model_class {cls_name!r}; valid: {list(MODEL_CLASSES)}{hint}")
    schema = FeatureSchema.from_dict(json.loads((root / "schema.json").read_text("utf-8")))
    config = ModelConfig.from_dict(json.loads((root / "model_config.json").read_text("utf-8")))
    model = MODEL_CLASSES[cls_name].from_schema(schema, config)
    state = load_file(str(root / "weights.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def load_vocab(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The bundle's vocab.json, or None when it has none."""
    file = Path(path) / "vocab.json"
    if not file.is_file():
        return None
    return dict(json.loads(file.read_text(encoding="utf-8")))


def bundle_version(path: str | os.PathLike[str]) -> str:
    """The model version: a digest of the bundle's schema, config, weights and vocabulary,
    and of the manifest's history_groups (12 hex digits), always.

    A manifest's own extra "version" is only a label (serving's bundle_label): were it the
    version, weights replaced under an unchanged label would keep the version an ONNX export
    was checked against, and the stale export would serve the old weights. The routing
    fields (which behavior types feed each history) change what a rank call reads, so a
    bundle whose mapping changed is a new version too; a manifest without them digests as
    before they existed (an older bundle keeps its version and its export).
    """
    from dinrec.history_groups import MANIFEST_KEY

    root = Path(path)
    digest = hashlib.sha256()
    for name in VERSIONED_FILES:
        file = root / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    manifest_file = root / "manifest.json"
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        routing = manifest.get(MANIFEST_KEY)
        if routing is not None:
            # Canonical JSON: key order or spacing in the file is not a new version.
            digest.update(b"manifest.json")
            digest.update(json.dumps(routing, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:12]
