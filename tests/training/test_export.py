"""Export smoke tests on a tiny random BERT: ONNX parity with torch, int8 gate, bundle and manifest hashes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from csrm_guard.model.manifest import Manifest  # noqa: E402
from csrm_guard.policy.render import template_hash  # noqa: E402
from csrm_guard.training.batching import PairEncoder, load_items  # noqa: E402
from csrm_guard.training.export import ExportOptions, export_bundle, export_onnx, onnx_forward  # noqa: E402
from csrm_guard.training.predict import predict_with, torch_forward  # noqa: E402
from csrm_guard.training.train import TrainConfig, train  # noqa: E402


@pytest.fixture(name="checkpoint")
def _checkpoint(tmp_path, data_dir, tiny_model, tokenizer):
    config = TrainConfig(
        data_dir=data_dir,
        run_dir=tmp_path / "run",
        max_length=48,
        max_clause_tokens=12,
        batch_size=8,
        lr=1e-3,
        bf16=False,
        epochs=1,
    )
    return train(config, model=tiny_model, tokenizer=tokenizer)


def test_onnx_matches_torch(tmp_path, data_dir, tiny_model, tokenizer, categories):
    """The exported graph reproduces torch's logits on variable batch and sequence sizes."""
    path = tmp_path / "m.onnx"
    export_onnx(tiny_model, path)
    items = load_items(
        data_dir / "dev", PairEncoder(tokenizer, 48, 12), categories, taxonomy_query="standard", limits={}
    )
    ours = predict_with(onnx_forward(path), items, len(categories), batch_size=5)
    ref = predict_with(torch_forward(tiny_model, bf16=False), items, len(categories), batch_size=5)
    np.testing.assert_allclose(ours.clause_logits, ref.clause_logits, atol=1e-4)
    np.testing.assert_allclose(ours.severity_logits, ref.severity_logits, atol=1e-4)
    np.testing.assert_allclose(ours.stricter_logits, ref.stricter_logits, atol=1e-4)


def test_bundle_manifest_lists_true_hashes(tmp_path, data_dir, checkpoint):
    """The bundle holds model, tokenizer and a manifest whose sha256 and sizes match the files."""
    out = tmp_path / "bundle"
    manifest = export_bundle(checkpoint, ExportOptions(out=out, data_dir=data_dir, model_id="tiny"))
    on_disk = Manifest.model_validate_json((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest.files) == {"model.onnx", "tokenizer.json"}
    for name, entry in manifest.files.items():
        data = (out / name).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.bytes == len(data)
    assert manifest.template_hash == template_hash()
    assert manifest.max_length == 48
    assert manifest.quantization in {"int8-per-channel", "fp32"}
    gate = manifest.metrics["dev_gate"]
    assert (manifest.quantization == "int8-per-channel") == gate["passed"]
    tokenizer_json = json.loads((out / "tokenizer.json").read_text())
    assert tokenizer_json["padding"] is None
    assert tokenizer_json["truncation"] is None


def test_fp32_option_skips_quantization(tmp_path, data_dir, checkpoint):
    """--fp32 ships the fused fp32 graph and records that the gate was skipped."""
    manifest = export_bundle(
        checkpoint, ExportOptions(out=tmp_path / "b", data_dir=data_dir, force_fp32=True)
    )
    assert manifest.quantization == "fp32"
    assert manifest.metrics["dev_gate"]["skipped"] is True
    assert manifest.calibration.temperature > 0
