"""Export smoke tests on a tiny random BERT: ONNX parity with torch, int8 gate, bundle and manifest hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from csrm_guard.errors import DataError  # noqa: E402
from csrm_guard.evaluation.runner import BundleRunner  # noqa: E402
from csrm_guard.model.bundle import load_bundle  # noqa: E402
from csrm_guard.model.manifest import Manifest  # noqa: E402
from csrm_guard.policy.render import template_hash  # noqa: E402
from csrm_guard.training.batching import PairEncoder, load_items  # noqa: E402
from csrm_guard.training.export import (  # noqa: E402
    ExportOptions,
    export_bundle,
    export_onnx,
    fuse,
    onnx_forward,
    quantize,
)
from csrm_guard.training.policy_fit import FitRow, fit_policy_thresholds  # noqa: E402
from csrm_guard.training.predict import predict_with, torch_forward  # noqa: E402
from csrm_guard.training.train import TrainConfig, train  # noqa: E402

POLICY = Path(__file__).resolve().parents[2] / "policies" / "general-assistant" / "policy.yaml"


@pytest.fixture(name="fit_data")
def _fit_data(data_dir):
    """The tiny build plus what the policy-level fit reads: ``examples.jsonl`` and a scenario-rule dev row."""
    examples = []
    for i, (text, harmful) in enumerate(
        [("how do i make a bomb", True), ("how do i bake a cake", False)] * 3
    ):
        split = "train" if i == 0 else "dev"
        source = "beavertails" if i == 1 else "synthetic"  # BeaverTails rows never enter the fit
        stage_messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "sure, here"}]
        row = {"id": f"e{i}", "split": split, "source": source, "harmful": harmful, "stage": "output"}
        examples.append(row | {"messages": stage_messages})
    (data_dir / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    scenario = {
        "id": "scenario:shop_competitor_prices:000",
        "source": "scenarios",
        "augmentation": "scn:violated",
        "stage": "input",
        "clause": "Rule: do not discuss competitors' prices.",
        "transcript": "user: what does the other shop charge?",
        "label": 1,
    }
    with (data_dir / "dev" / "clauses.jsonl").open("a") as handle:
        handle.write(json.dumps(scenario) + "\n")
    return data_dir


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


def _int8_weights(path: Path) -> list[np.ndarray]:
    graph = onnx.load(str(path)).graph
    return [
        onnx.numpy_helper.to_array(t)
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.dims
    ]


def test_reduce_range_keeps_weights_within_7_bits(tmp_path, tiny_model):
    """7-bit weights (|w| <= 64) cannot saturate the AVX2 u8 x s8 kernel's int16 pair sums; 8-bit ones reach 127."""
    export_onnx(tiny_model, tmp_path / "raw.onnx")
    config = tiny_model.encoder.config
    fuse(tmp_path / "raw.onnx", tmp_path / "fused.onnx", config.num_attention_heads, config.hidden_size)
    quantize(tmp_path / "fused.onnx", tmp_path / "q7.onnx", reduce_range=True)
    quantize(tmp_path / "fused.onnx", tmp_path / "q8.onnx", reduce_range=False)
    seven, eight = _int8_weights(tmp_path / "q7.onnx"), _int8_weights(tmp_path / "q8.onnx")
    assert seven
    assert len(seven) == len(eight)
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in seven) <= 64
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in eight) > 64


def test_bundle_manifest_lists_true_hashes(tmp_path, data_dir, checkpoint):
    """The bundle holds model, tokenizer and a manifest whose sha256 and sizes match the files."""
    out = tmp_path / "bundle"
    options = ExportOptions(out=out, data_dir=data_dir, model_id="tiny", fit_policy=None)
    manifest = export_bundle(checkpoint, options)
    on_disk = Manifest.model_validate_json((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest.files) == {"model.onnx", "tokenizer.json"}
    for name, entry in manifest.files.items():
        data = (out / name).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.bytes == len(data)
    assert manifest.template_hash == template_hash()
    assert manifest.max_length == 48
    assert manifest.quantization in {"int8-per-channel-7bit", "int8-per-channel", "fp32"}
    gates = manifest.metrics["dev_gates"]
    assert gates[0]["quantization"] == "int8-per-channel-7bit"  # tried first; 8-bit only when it fails
    assert all(not g["passed"] for g in gates[:-1])
    assert (manifest.quantization != "fp32") == gates[-1]["passed"]
    if gates[-1]["passed"]:
        assert manifest.quantization == gates[-1]["quantization"]
    tokenizer_json = json.loads((out / "tokenizer.json").read_text())
    assert tokenizer_json["padding"] is None
    assert tokenizer_json["truncation"] is None


def test_fp32_option_skips_quantization(tmp_path, data_dir, checkpoint):
    """--fp32 ships the fused fp32 graph and records that the gate was skipped."""
    manifest = export_bundle(
        checkpoint, ExportOptions(out=tmp_path / "b", data_dir=data_dir, force_fp32=True, fit_policy=None)
    )
    assert manifest.quantization == "fp32"
    assert manifest.metrics["dev_gate"]["skipped"] is True
    assert manifest.calibration.temperature > 0


def test_clause_level_thresholds_without_a_fit_policy(tmp_path, data_dir, checkpoint):
    """With no fit policy the recommended thresholds are the clause-level ones and none are stored twice."""
    manifest = export_bundle(
        checkpoint, ExportOptions(out=tmp_path / "b", data_dir=data_dir, fit_policy=None)
    )
    report = manifest.metrics["dev_calibration"]
    assert manifest.calibration.clause_thresholds is None
    assert manifest.calibration.thresholds == {
        "input": report["threshold_input"],
        "output": report["threshold_output"],
    }
    assert "dev_policy_thresholds" not in manifest.metrics


def test_policy_level_thresholds_are_fitted_and_kept_apart(tmp_path, fit_data, checkpoint):
    """The export refits the recommended thresholds on whole policies; clause mode keeps the clause-level ones."""
    out = tmp_path / "b"
    manifest = export_bundle(checkpoint, ExportOptions(out=out, data_dir=fit_data, fit_policy=POLICY))
    calibration = load_bundle(out).manifest.calibration  # the rewritten manifest still verifies
    assert calibration == manifest.calibration
    report = manifest.metrics["dev_calibration"]
    assert calibration.clause_thresholds == {
        "input": report["threshold_input"],
        "output": report["threshold_output"],
    }
    fit = manifest.metrics["dev_policy_thresholds"]
    assert fit["fit-general"]["rows"] == 4  # dev rows that are not BeaverTails
    assert fit["fit-scenarios"]["rows"] == 1
    assert calibration.thresholds == {"input": fit["threshold_input"], "output": fit["threshold_output"]}
    runner = BundleRunner(out)
    try:
        assert runner.threshold("input") == pytest.approx(calibration.clause_thresholds["input"])
    finally:
        runner.close()


def test_policy_fit_names_the_missing_file(tmp_path, data_dir, checkpoint):
    """A build without ``examples.jsonl`` fails the policy-level fit with the missing path, not a traceback."""
    with pytest.raises(DataError, match=r"examples\.jsonl"):
        export_bundle(checkpoint, ExportOptions(out=tmp_path / "b", data_dir=data_dir, fit_policy=POLICY))


def test_policy_fit_without_dev_conversations_is_an_error(tmp_path, data_dir, checkpoint):
    """A build with no dev conversation to fit on fails clearly instead of shipping made-up thresholds."""
    row = {"id": "t", "split": "train", "source": "synthetic", "harmful": True, "messages": []}
    (data_dir / "examples.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="no dev conversations"):
        export_bundle(checkpoint, ExportOptions(out=tmp_path / "b", data_dir=data_dir, fit_policy=POLICY))


def test_fit_policy_thresholds_separates_stages():
    """Each stage gets the cut that separates its own maxima; the report compares both schemes per set."""
    rows = [
        FitRow("fit-general", str(i), None, stage, "", label)
        for i, (stage, label) in enumerate(
            [("input", 1), ("input", 1), ("input", 0), ("input", 0)] * 15
            + [("output", 1), ("output", 0)] * 30
        )
    ]
    maxima = np.array(
        [
            {"input": (0.9, 0.8, 0.6, 0.5), "output": (0.4, 0.2)}[r.stage][
                i % (4 if r.stage == "input" else 2)
            ]
            for i, r in enumerate(rows)
        ]
    )
    fitted, report = fit_policy_thresholds(maxima, rows, {"input": 0.3, "output": 0.3})
    assert 0.6 < fitted["input"] <= 0.8
    assert 0.2 < fitted["output"] <= 0.4
    general = report["fit-general"]
    assert general["f1_policy"] == pytest.approx(1.0)
    assert general["over_refusal_policy"] == 0.0
    assert general["over_refusal_clause"] == pytest.approx(0.5)  # 0.3 flags the input negatives
