"""Tests for csrm_guard.model.bundle: verification of files, hashes, sizes and compatibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from csrm_guard.errors import BundleError, BundleIntegrityError
from csrm_guard.model import bundle as bundle_module
from csrm_guard.model import load_bundle


@pytest.fixture(name="bundle_copy")
def _bundle_copy(random_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(random_bundle, tmp_path / "bundle"))


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


class TestValidBundle:
    def test_loads_and_names_the_model(self, random_bundle):
        """A valid bundle loads; its model id joins id, version and the model file's hash prefix."""
        bundle = load_bundle(random_bundle)
        digest = bundle.manifest.files["model.onnx"].sha256
        assert bundle.model_id == f"random-test@0+{digest[:12]}"
        assert bundle.model_path.is_file()
        assert bundle.tokenizer_path.is_file()


class TestMissing:
    def test_missing_folder(self, tmp_path):
        """A folder that does not exist is named in the error."""
        with pytest.raises(BundleError, match="does not exist") as info:
            load_bundle(tmp_path / "nope")
        assert info.value.path == str(tmp_path / "nope")

    def test_default_bundle_not_shipped_yet(self, monkeypatch, tmp_path):
        """Without a shipped default bundle the error says how to pass one."""
        monkeypatch.setattr(bundle_module, "default_bundle_path", lambda: tmp_path / "default")
        with pytest.raises(BundleError, match="model=PATH"):
            load_bundle()

    def test_missing_manifest(self, bundle_copy):
        """A folder without manifest.json says so."""
        (bundle_copy / "manifest.json").unlink()
        with pytest.raises(BundleError, match=r"manifest\.json is missing"):
            load_bundle(bundle_copy)

    @pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json"])
    def test_missing_file(self, bundle_copy, name):
        """A file listed in the manifest but absent is named."""
        (bundle_copy / name).unlink()
        with pytest.raises(BundleError, match=f"{name} is missing") as info:
            load_bundle(bundle_copy)
        assert not isinstance(info.value, BundleIntegrityError)

    def test_manifest_without_a_required_file(self, bundle_copy):
        """A manifest that does not list tokenizer.json is rejected."""
        data = json.loads((bundle_copy / "manifest.json").read_text())
        del data["files"]["tokenizer.json"]
        (bundle_copy / "manifest.json").write_text(json.dumps(data))
        with pytest.raises(BundleError, match=r"does not list 'tokenizer\.json'"):
            load_bundle(bundle_copy)


class TestCorrupted:
    def test_changed_byte(self, bundle_copy):
        """One flipped byte in model.onnx is caught by the sha256 check."""
        path = bundle_copy / "model.onnx"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(BundleIntegrityError, match=r"model\.onnx is altered"):
            load_bundle(bundle_copy)

    def test_truncated_file(self, bundle_copy):
        """A truncated tokenizer.json is reported as truncated, with both sizes."""
        path = bundle_copy / "tokenizer.json"
        data = path.read_bytes()
        path.write_bytes(data[:-10])
        with pytest.raises(BundleIntegrityError, match=rf"truncated: {len(data) - 10} bytes"):
            load_bundle(bundle_copy)

    def test_verify_false_skips_hashing_but_not_sizes(self, bundle_copy):
        """verify=False skips the sha256 but still catches truncation."""
        path = bundle_copy / "model.onnx"
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        load_bundle(bundle_copy, verify=False)
        path.write_bytes(bytes(data[:-1]))
        with pytest.raises(BundleIntegrityError):
            load_bundle(bundle_copy, verify=False)

    def test_invalid_manifest(self, bundle_copy):
        """A manifest with a bad field names the field."""
        _edit_manifest(bundle_copy, max_length=-3)
        with pytest.raises(BundleError, match="max_length"):
            load_bundle(bundle_copy)

    def test_manifest_not_json(self, bundle_copy):
        """A manifest that is not JSON is reported as invalid."""
        (bundle_copy / "manifest.json").write_text("{not json")
        with pytest.raises(BundleError, match="not a valid manifest"):
            load_bundle(bundle_copy)

    def test_file_outside_the_bundle(self, bundle_copy):
        """A manifest may not point outside its folder."""
        data = json.loads((bundle_copy / "manifest.json").read_text())
        data["files"]["../escape.bin"] = data["files"]["model.onnx"]
        (bundle_copy / "manifest.json").write_text(json.dumps(data))
        with pytest.raises(BundleError, match="invalid file name"):
            load_bundle(bundle_copy)


class TestIncompatible:
    def test_template_hash(self, bundle_copy):
        """A bundle trained on other templates is refused with both hashes."""
        _edit_manifest(bundle_copy, template_hash="0" * 64)
        with pytest.raises(BundleError, match="trained on templates") as info:
            load_bundle(bundle_copy)
        assert "000000000000" in str(info.value)

    def test_template_version(self, bundle_copy):
        """A bundle for another template version is refused."""
        _edit_manifest(bundle_copy, template_version="999")
        with pytest.raises(BundleError, match="v999"):
            load_bundle(bundle_copy)

    def test_taxonomy_version(self, bundle_copy):
        """A bundle for another taxonomy version is refused."""
        _edit_manifest(bundle_copy, taxonomy_version="1999.1")
        with pytest.raises(BundleError, match=r"taxonomy 1999\.1"):
            load_bundle(bundle_copy)

    def test_category_order(self, bundle_copy):
        """Same taxonomy version but a different category order is refused too."""
        data = json.loads((bundle_copy / "manifest.json").read_text())
        _edit_manifest(bundle_copy, categories=list(reversed(data["categories"])))
        with pytest.raises(BundleError, match="severity head"):
            load_bundle(bundle_copy)
