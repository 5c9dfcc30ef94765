"""``csrm-guard export``: checkpoint -> fused ONNX -> per-channel int8 -> parity gate -> calibrated bundle.

The recipe measured in ``shared/notes/measurements.md``:

1. rebuild the model with eager attention and export with the legacy TorchScript exporter (``dynamo=False``),
   opset 17, dynamic batch and sequence axes (only this path lets onnxruntime fuse attention);
2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` fuses attention and layer norms;
3. ``quantize_dynamic`` with per-channel QInt8 weights and ``DefaultTensorType=FLOAT`` (needed on fused graphs),
   by default with ``reduce_range`` (7-bit weights): x86 CPUs without VNNI multiply u8 activations by s8 weights
   with VPMADDUBSW, which saturates 16-bit pair sums for 8-bit weights, so an 8-bit graph scores differently on
   AVX2 and on VNNI/AMX CPUs; with 7-bit weights no pair sum can saturate and every kernel agrees;
4. parity gate on dev clause rows: int8 must keep F1 within 0.5 points and AUPRC within 0.005 of fp32, each at
   its own best-F1 threshold; the 7-bit graph is tried first, then the 8-bit one, else the bundle ships the fused
   fp32 graph;
5. temperatures and per-stage clause-level thresholds are fitted on the shipped graph's own dev logits;
6. the bundle's recommended thresholds are then fitted at the policy level (:mod:`csrm_guard.training.policy_fit`):
   dev conversations scored under whole policies through the runtime scorer, one threshold per stage on the
   maximum over the policy's clauses, which is what a ``Guard`` decides on. The clause-level ones stay in the
   manifest as ``clause_thresholds``.

The bundle folder gets ``model.onnx``, ``tokenizer.json`` (padding and truncation off) and ``manifest.json``.
Intermediate graphs stay in the work folder (``RUN/export``), never in the bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from onnxruntime import InferenceSession, SessionOptions
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from tokenizers import Tokenizer

from csrm_guard.errors import DataError
from csrm_guard.evaluation.metrics import auprc, best_f1_threshold, binary_scores
from csrm_guard.model.bundle import load_bundle
from csrm_guard.model.manifest import Calibration, FileEntry, Manifest, Quantization
from csrm_guard.policy.render import TEMPLATE_VERSION, template_hash
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.batching import Item, PairEncoder, load_items
from csrm_guard.training.calibration import calibrate
from csrm_guard.training.model import CsrmModel
from csrm_guard.training.policy_fit import fit_policy_thresholds, fitting_rows, policy_maxima
from csrm_guard.training.predict import Forward, Predictions, load_checkpoint, predict_with

__all__ = [
    "DEFAULT_FIT_POLICY",
    "ExportOptions",
    "export_bundle",
    "export_onnx",
    "fuse",
    "onnx_forward",
    "quantize",
    "write_bundle",
]

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("violation_logit", "severity_logits")
F1_TOLERANCE = 0.005
AUPRC_TOLERANCE = 0.005
DEFAULT_FIT_POLICY = Path("policies/general-assistant/policy.yaml")
"""The policy the recommended thresholds are fitted under (relative to the repository root)."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What ``csrm-guard export`` needs besides the checkpoint.

    Attributes:
        out: The bundle folder to write.
        data_dir: ``data build`` output (its ``dev`` split drives the gate and calibration).
        work_dir: Where intermediate graphs go (default: ``<checkpoint run>/export``).
        model_id: The bundle's model id.
        model_version: The bundle's version.
        dev_clauses: Dev clause rows used for the gate and calibration (a seeded sample).
        dev_taxonomy: Dev taxonomy rows used for the severity temperature.
        force_fp32: Skip int8 and ship the fused fp32 graph.
        reduce_range: Try 7-bit weights first, which every CPU's int8 kernel scores the same, and 8-bit ones only
            when the 7-bit graph fails the parity gate.
        fit_policy: The policy the policy-level thresholds are fitted under (``None``: keep the clause-level
            thresholds as the recommended ones).
        fit_general: At most this many dev conversations in the ``fit-general`` set.
    """

    out: Path
    data_dir: Path
    work_dir: Path | None = None
    model_id: str = "csrm-minilm-l6"
    model_version: str = "1.0.0"
    dev_clauses: int | None = 3000
    dev_taxonomy: int | None = 600
    force_fp32: bool = False
    reduce_range: bool = True
    fit_policy: Path | None = DEFAULT_FIT_POLICY
    fit_general: int = 800


def export_onnx(model: CsrmModel, path: Path, opset: int = 17) -> None:
    """Export with the legacy exporter and dynamic ``[batch, seq]`` axes (eager attention required for fusion)."""
    model.eval()
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3]])
    args = (ids, torch.ones_like(ids), torch.tensor([[0, 0, 0, 0, 1, 1, 1]]))
    axes = {name: {0: "batch", 1: "seq"} for name in INPUTS}
    axes.update({"violation_logit": {0: "batch"}, "severity_logits": {0: "batch"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter is deliberate: only its graphs get onnxruntime's attention fusion
        # expected: deprecation notices of the legacy exporter and tracer notes on shape checks, which the
        # dynamic-axes parity test covers
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def fuse(src: Path, dst: Path, num_heads: int, hidden_size: int) -> None:
    """Fuse attention, GELU and layer norms with onnxruntime's BERT optimizer."""
    optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    logger.info("fused operators: %s", counts)
    optimized.save_model_to_file(str(dst))


def quantize(src: Path, dst: Path, *, reduce_range: bool = True) -> None:
    """Per-channel dynamic int8 quantisation of the fused graph's weights (7-bit with ``reduce_range``)."""
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def onnx_forward(path: Path, threads: int = 2) -> Forward:
    """A :data:`Forward` that runs an ONNX graph with onnxruntime on CPU."""
    options = SessionOptions()
    options.intra_op_num_threads = threads
    session = InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def forward(batch: dict[str, torch.Tensor]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        feeds = {name: batch[name].numpy().astype(np.int64) for name in INPUTS}
        violation, severity = session.run(list(OUTPUTS), feeds)
        return np.asarray(violation, dtype=np.float32), np.asarray(severity, dtype=np.float32)

    return forward


def _sigmoid(x: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x.astype(np.float64))))


def _gate(fp32: Predictions, int8: Predictions) -> dict[str, Any]:
    """Compare int8 with fp32 on dev clause rows, each at its own best-F1 threshold, and by AUPRC.

    Each graph is compared at the threshold it would ship with (thresholds are fitted on the shipped graph's own
    logits), so both get the same selection optimism; F1 at fp32's threshold is recorded too.
    """
    labels = fp32.labels
    fp32_threshold, _ = best_f1_threshold(labels, _sigmoid(fp32.clause_logits))
    result: dict[str, Any] = {"rows": int(labels.size), "fp32_threshold": fp32_threshold}
    for name, pred in (("fp32", fp32), ("int8", int8)):
        probs = _sigmoid(pred.clause_logits)
        result[f"{name}_f1"] = best_f1_threshold(labels, probs)[1]
        result[f"{name}_f1_at_fp32_threshold"] = binary_scores(labels, probs, fp32_threshold).f1
        result[f"{name}_auprc"] = auprc(labels, probs)
    result["passed"] = bool(
        abs(result["int8_f1"] - result["fp32_f1"]) <= F1_TOLERANCE
        and abs(result["int8_auprc"] - result["fp32_auprc"]) <= AUPRC_TOLERANCE
    )
    return result


def _variants(options: ExportOptions) -> list[Quantization]:
    """The int8 graphs to try, in order of preference: the first that passes the parity gate ships."""
    if options.force_fp32:
        return []
    return ["int8-per-channel-7bit", "int8-per-channel"] if options.reduce_range else ["int8-per-channel"]


def _fresh(path: Path, source: Path) -> bool:
    """True when ``path`` exists and is newer than ``source`` (a re-run reuses graphs of the same checkpoint)."""
    return path.exists() and path.stat().st_mtime > source.stat().st_mtime


def _dev_items(options: ExportOptions, encoder: PairEncoder, run_config: dict[str, Any]) -> list[Item]:
    limits = {"clauses": options.dev_clauses, "taxonomy": options.dev_taxonomy, "pairs": 0}
    return load_items(
        options.data_dir / "dev",
        encoder,
        load_taxonomy().ids,
        taxonomy_query=run_config["taxonomy_query"],
        limits=limits,
        seed=1,
        unconditioned=bool(run_config.get("unconditioned", False)),
    )


def export_bundle(checkpoint: Path, options: ExportOptions) -> Manifest:
    """Export, quantise, gate, calibrate and write a bundle from a training checkpoint.

    Args:
        checkpoint: ``final.pt`` (or ``last.pt``) written by training.
        options: Output folder, data and naming.

    Returns:
        The manifest written to ``options.out/manifest.json``.
    """
    model, run_config = load_checkpoint(checkpoint, attn_implementation="eager")
    work = options.work_dir or checkpoint.parent.parent / "export"
    work.mkdir(parents=True, exist_ok=True)
    raw, fused = work / "model.raw.fp32.onnx", work / "model.fused.fp32.onnx"
    config = model.encoder.config
    if not _fresh(fused, checkpoint):
        export_onnx(model, raw)
        fuse(raw, fused, int(config.num_attention_heads), int(config.hidden_size))
    tokenizer = Tokenizer.from_file(str(checkpoint.parent.parent / "tokenizer.json"))
    encoder = PairEncoder(tokenizer, run_config["max_length"], run_config["max_clause_tokens"])
    dev = _dev_items(options, encoder, run_config)
    fp32_pred = predict_with(onnx_forward(fused), dev, model.num_categories, batch_size=16)
    chosen, chosen_pred = fused, fp32_pred
    quantization: Quantization = "fp32"
    gates: list[dict[str, Any]] = []
    for name in _variants(options):
        graph = work / f"model.{name}.onnx"
        if not _fresh(graph, fused):
            quantize(fused, graph, reduce_range=name == "int8-per-channel-7bit")
        pred = predict_with(onnx_forward(graph), dev, model.num_categories, batch_size=16)
        gates.append({"quantization": name, **_gate(fp32_pred, pred)})
        logger.info("parity gate: %s", gates[-1])
        if gates[-1]["passed"]:
            chosen, chosen_pred, quantization = graph, pred, name
            break
    gate = gates[-1] if gates else {"passed": False, "skipped": True}
    stages = [item.meta.get("stage") or "input" for item in dev if item.kind == "clause"]
    calibration, report = calibrate(
        chosen_pred.clause_logits,
        chosen_pred.labels,
        stages,
        severity_logits=chosen_pred.severity_logits if chosen_pred.severity.size else None,
        severity_targets=chosen_pred.severity if chosen_pred.severity.size else None,
    )
    metrics = {"dev_gate": gate, "dev_gates": gates, "dev_calibration": report}
    manifest = write_bundle(
        options.out,
        chosen,
        tokenizer,
        calibration,
        run_config,
        options,
        quantization=quantization,
        metrics=metrics,
    )
    if options.fit_policy is None or run_config.get("unconditioned", False):
        return manifest
    return _fit_policy_level(manifest, options, options.fit_policy)


def _fit_policy_level(manifest: Manifest, options: ExportOptions, policy_path: Path) -> Manifest:
    """Refit the recommended thresholds on whole policies with the written bundle; rewrite its manifest."""
    rows = fitting_rows(options.data_dir, policy_path, general_limit=options.fit_general)
    if not rows:
        raise DataError(
            "no dev conversations to fit the policy-level thresholds on (export with --clause-thresholds to skip)",
            source=str(options.data_dir),
        )
    maxima = policy_maxima(load_bundle(options.out), rows)
    clause_level = dict(manifest.calibration.thresholds)
    fitted, report = fit_policy_thresholds(maxima, rows, clause_level)
    calibration = manifest.calibration.model_copy(
        update={
            "thresholds": {"input": fitted["input"], "output": fitted["output"]},
            "clause_thresholds": clause_level,
        }
    )
    updated = manifest.model_copy(
        update={"calibration": calibration, "metrics": {**manifest.metrics, "dev_policy_thresholds": report}}
    )
    _save_manifest(options.out, updated)
    return updated


def _save_manifest(out: Path, manifest: Manifest) -> None:
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _file_entry(path: Path) -> FileEntry:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return FileEntry(sha256=digest, bytes=path.stat().st_size)


def _data_card(data_dir: Path) -> dict[str, Any]:
    card_path = data_dir / "data_card.json"
    if not card_path.exists():
        return {"source": str(data_dir.name), "note": "data_card.json missing"}
    card = json.loads(card_path.read_text(encoding="utf-8"))
    # keep the manifest small: top-level scalars and small mappings only
    return {k: v for k, v in card.items() if len(json.dumps(v)) <= 2000}


def write_bundle(  # noqa: PLR0917 - internal step of export_bundle, also used by tests
    out: Path,
    graph: Path,
    tokenizer: Tokenizer,
    calibration: Calibration,
    run_config: dict[str, Any],
    options: ExportOptions,
    *,
    quantization: Quantization,
    metrics: dict[str, Any],
) -> Manifest:
    """Copy the graph and tokenizer into ``out`` and write the manifest with their sha256.

    Returns:
        The manifest written.
    """
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(graph, out / "model.onnx")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out / "tokenizer.json"))
    taxonomy = load_taxonomy()
    manifest = Manifest(
        model_id=options.model_id,
        model_version=options.model_version,
        files={name: _file_entry(out / name) for name in ("model.onnx", "tokenizer.json")},
        max_length=run_config["max_length"],
        max_clause_tokens=run_config["max_clause_tokens"],
        template_version=TEMPLATE_VERSION,
        template_hash=template_hash(),
        taxonomy_version=taxonomy.version,
        categories=taxonomy.ids,
        taxonomy_query=run_config["taxonomy_query"],
        calibration=calibration,
        quantization=quantization,
        data_card=_data_card(options.data_dir),
        metrics=metrics,
    )
    _save_manifest(out, manifest)
    logger.info("wrote bundle %s (%s, %d bytes)", out, quantization, (out / "model.onnx").stat().st_size)
    return manifest
