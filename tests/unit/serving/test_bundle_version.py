"""bundle_version covers what changes a score: the files, and the manifest's routing of
behavior types to histories; nothing else in the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.unit.serving.grouped_bundle import FEEDS, save_grouped

from dinrec.bundle import VERSIONED_FILES, bundle_version


def _edit_manifest(bundle: Path, **changes: object) -> None:
    file = bundle / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest.update(changes)
    file.write_text(json.dumps(manifest, indent=4))


def test_same_weights_and_mapping_give_the_same_version(tmp_path: Path) -> None:
    assert bundle_version(save_grouped(tmp_path / "a")) == bundle_version(
        save_grouped(tmp_path / "b"))


def test_a_changed_mapping_under_the_same_weights_is_a_new_version(tmp_path: Path) -> None:
    first = bundle_version(save_grouped(tmp_path / "a"))
    moved = bundle_version(save_grouped(tmp_path / "b", {"": ["pv", "fav"], "buy": ["buy"]}))
    assert moved != first
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == (
        tmp_path / "b" / "weights.safetensors").read_bytes()


def test_a_mapping_edited_in_the_manifest_is_a_new_version(tmp_path: Path) -> None:
    bundle = save_grouped(tmp_path / "a")
    first = bundle_version(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    routed = manifest["history_groups"]
    routed["buy"]["behaviors"] = ["buy"]
    _edit_manifest(bundle, history_groups=routed)
    assert bundle_version(bundle) != first


def test_labels_and_spelling_of_the_manifest_keep_the_version(tmp_path: Path) -> None:
    bundle = save_grouped(tmp_path / "a")
    first = bundle_version(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    # The same mapping with its keys in another order, and a new label: not a new model.
    reordered = {name: dict(reversed(list(entry.items())))
                 for name, entry in reversed(list(manifest["history_groups"].items()))}
    _edit_manifest(bundle, history_groups=reordered, extra={"version": "v9"})
    assert bundle_version(bundle) == first


def test_a_bundle_without_a_mapping_keeps_the_version_of_its_files(plain_bundle: Path) -> None:
    # Bundles saved before the mapping existed keep their version (and their ONNX export).
    assert "history_groups" not in json.loads((plain_bundle / "manifest.json").read_text())
    digest = hashlib.sha256()
    for name in VERSIONED_FILES:
        if (plain_bundle / name).is_file():
            digest.update(name.encode() + (plain_bundle / name).read_bytes())
    assert bundle_version(plain_bundle) == digest.hexdigest()[:12]


def test_the_mapping_saved_is_the_one_given(tmp_path: Path) -> None:
    manifest = json.loads((save_grouped(tmp_path / "a") / "manifest.json").read_text())
    assert {k: v["behaviors"] for k, v in manifest["history_groups"].items()} == FEEDS
