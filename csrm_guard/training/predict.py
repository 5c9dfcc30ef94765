"""Run a torch CSRM over encoded items (dev metrics during training) and reload checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import BertConfig

from csrm_guard.errors import BundleError
from csrm_guard.evaluation.metrics import auprc, binary_scores, monotonicity_violation_rate, pair_accuracy
from csrm_guard.training.batching import Item, collate, make_batches
from csrm_guard.training.model import CsrmModel, build_from_config

__all__ = [
    "Forward",
    "Predictions",
    "dev_metrics",
    "load_checkpoint",
    "predict",
    "predict_with",
    "torch_forward",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Predictions:
    """Raw logits per item kind, in the order of the items of that kind.

    Attributes:
        clause_logits: Violation logits of clause items.
        labels: Their labels.
        stricter_logits: Violation logits under the stricter clause of each pair.
        laxer_logits: The same under the laxer clause.
        severity_logits: ``[N, C, 3]`` of taxonomy items.
        severity: ``[N, C]`` targets (``-1`` unknown).
    """

    clause_logits: NDArray[np.float32]
    labels: NDArray[np.float32]
    stricter_logits: NDArray[np.float32]
    laxer_logits: NDArray[np.float32]
    severity_logits: NDArray[np.float32]
    severity: NDArray[np.int64]


Forward = Callable[[dict[str, torch.Tensor]], tuple[NDArray[np.float32], NDArray[np.float32]]]
"""Maps a collated batch to ``(violation_logit [B], severity_logits [B, C, 3])`` as numpy arrays."""


def torch_forward(model: CsrmModel, bf16: bool = True) -> Forward:
    """A :data:`Forward` running the torch model in eval mode on the model's device (bf16 autocast optional)."""
    model.eval()
    device = next(model.parameters()).device

    @torch.no_grad()
    def forward(batch: dict[str, torch.Tensor]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        inputs = [batch[name].to(device) for name in ("input_ids", "attention_mask", "token_type_ids")]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            violation, sev = model(*inputs)
        return violation.float().cpu().numpy(), sev.float().cpu().numpy()

    return forward


def predict(model: CsrmModel, items: Sequence[Item], batch_size: int = 32, bf16: bool = True) -> Predictions:
    """Score items with the torch model in eval mode, keeping the order of each kind."""
    return predict_with(torch_forward(model, bf16), items, model.num_categories, batch_size)


def predict_with(
    forward: Forward, items: Sequence[Item], num_categories: int, batch_size: int = 32
) -> Predictions:
    """Score items with any :data:`Forward` (torch or onnxruntime), keeping the order of each kind."""
    position = {id(item): n for n, item in enumerate(items)}
    clause: dict[int, float] = {}
    pairs: dict[int, tuple[float, float]] = {}
    severity: dict[int, NDArray[np.float32]] = {}
    for batch_items in make_batches(items, batch_size, seed=0):
        violation, sev = forward(collate(batch_items))
        row = 0
        for item in batch_items:
            key = position[id(item)]
            if item.kind == "clause":
                clause[key] = float(violation[row])
            elif item.kind == "taxonomy":
                severity[key] = sev[row]
            else:
                pairs[key] = (float(violation[row]), float(violation[row + 1]))
            row += len(item.seqs)
    return _assemble(items, clause, pairs, severity, num_categories)


def _assemble(
    items: Sequence[Item],
    clause: dict[int, float],
    pairs: dict[int, tuple[float, float]],
    severity: dict[int, NDArray[np.float32]],
    num_categories: int,
) -> Predictions:
    order = sorted(clause)
    pair_order = sorted(pairs)
    sev_order = sorted(severity)
    return Predictions(
        clause_logits=np.array([clause[k] for k in order], dtype=np.float32),
        labels=np.array([items[k].label for k in order], dtype=np.float32),
        stricter_logits=np.array([pairs[k][0] for k in pair_order], dtype=np.float32),
        laxer_logits=np.array([pairs[k][1] for k in pair_order], dtype=np.float32),
        severity_logits=np.array([severity[k] for k in sev_order], dtype=np.float32).reshape(
            -1, num_categories, 3
        ),
        severity=np.array([items[k].severity for k in sev_order], dtype=np.int64).reshape(-1, num_categories),
    )


def _sigmoid(x: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x.astype(np.float64))))


def dev_metrics(
    model: CsrmModel, items: Sequence[Item], batch_size: int = 32, bf16: bool = True
) -> dict[str, float]:
    """Quick dev metrics at threshold 0.5: clause F1/AUPRC, pair accuracy, monotonicity, severity accuracy."""
    out: dict[str, float] = {}
    if not items:
        return out
    pred = predict(model, items, batch_size, bf16)
    if pred.labels.size:
        probs = _sigmoid(pred.clause_logits)
        out["dev_f1"] = binary_scores(pred.labels, probs).f1
        out["dev_auprc"] = auprc(pred.labels, probs)
    if pred.stricter_logits.size:
        out["dev_pair_acc"] = pair_accuracy(pred.stricter_logits, pred.laxer_logits)
        out["dev_monotonicity_violations"] = monotonicity_violation_rate(
            _sigmoid(pred.stricter_logits), _sigmoid(pred.laxer_logits)
        )
    if pred.severity.size:
        known = pred.severity >= 0
        predicted = (pred.severity_logits > 0).sum(axis=-1)
        out["dev_severity_acc"] = (
            float(np.mean(predicted[known] == pred.severity[known])) if known.any() else 0.0
        )
    return {k: round(v, 4) for k, v in out.items()}


def load_checkpoint(path: Path, attn_implementation: str = "sdpa") -> tuple[CsrmModel, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by training; return it with the run config.

    Raises:
        BundleError: When the file is missing or not a CSRM checkpoint.
    """
    if not path.exists():
        raise BundleError(f"checkpoint {path} not found", path=str(path))
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "bert_config" not in state:
        raise BundleError(f"{path} is not a csrm_guard training checkpoint", path=str(path))
    model = build_from_config(
        BertConfig.from_dict(state["bert_config"]), state["num_categories"], attn_implementation
    )
    model.load_state_dict(state["model"])
    model.eval()
    return model, dict(state["config"])
