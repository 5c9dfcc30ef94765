"""Post-hoc calibration on dev data: temperatures for both heads, a severity bias and a threshold per stage.

* Clause temperature ``T``: minimises the binary cross-entropy of ``sigmoid(logit / T)`` on dev clause rows.
* Severity temperature and bias: Platt scaling, ``sigmoid(logit / T_sev + b_sev)``, fitted by the same loss on the
  cumulative severity cells of dev taxonomy rows (unknown cells masked). The bias matters when training moved the
  severity head's decision point (a temperature alone cannot shift it).
* Thresholds: per stage, the calibrated probability that maximises F1 of the violation class on dev rows of that
  stage (all rows when a stage has too few); stored in the manifest as the stage's recommended threshold.

smECE before and after is returned alongside, so the export report can show what calibration bought.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from csrm_guard.evaluation.metrics import best_f1_threshold, smooth_ece
from csrm_guard.model.manifest import Calibration

__all__ = ["CalibrationReport", "calibrate", "fit_platt", "fit_temperature", "stage_thresholds"]

logger = logging.getLogger(__name__)

CalibrationReport = dict[str, float]
_MIN_STAGE_ROWS = 50
_MIN_STAGE_POSITIVES = 10


def fit_temperature(logits: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> float:
    """The temperature that minimises the (masked) binary cross-entropy of ``sigmoid(logits / T)``.

    Args:
        logits: Raw logits, any shape.
        labels: 0/1 targets of the same shape.
        mask: 1 where a cell counts (default: all).

    Returns:
        ``T`` in ``[0.05, 20]``; 1.0 when there is nothing to fit.
    """
    return _fit(logits, labels, mask, with_bias=False)[0]


def fit_platt(logits: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None) -> tuple[float, float]:
    """The temperature and bias that minimise the (masked) binary cross-entropy of ``sigmoid(logits / T + b)``.

    Args:
        logits: Raw logits, any shape.
        labels: 0/1 targets of the same shape.
        mask: 1 where a cell counts (default: all).

    Returns:
        ``(T, b)`` with ``T`` in ``[0.05, 20]`` and ``b`` in ``[-20, 20]``; ``(1.0, 0.0)`` when there is nothing
        to fit.
    """
    return _fit(logits, labels, mask, with_bias=True)


def _fit(
    logits: ArrayLike, labels: ArrayLike, mask: ArrayLike | None, *, with_bias: bool
) -> tuple[float, float]:
    x = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    m = torch.ones_like(x) if mask is None else torch.as_tensor(np.asarray(mask, dtype=np.float64))
    if float(m.sum()) == 0:
        return 1.0, 0.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=with_bias)
    params = [log_t, bias] if with_bias else [log_t]
    optimizer = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        z = x / log_t.exp() + bias
        cells = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        loss = (cells * m).sum() / m.sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    temperature = float(np.clip(np.exp(float(log_t.detach())), 0.05, 20.0))
    return temperature, float(np.clip(float(bias.detach()), -20.0, 20.0))


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def stage_thresholds(
    probs: NDArray[np.float64], labels: NDArray[np.float64], stages: Sequence[str], *, tolerance: float = 0.0
) -> dict[str, float]:
    """Per stage, the probability that maximises F1 of the violation class (all rows when a stage has too few).

    ``tolerance``: take the highest threshold whose F1 is within this of the best (see ``best_f1_threshold``).
    """
    overall, _ = best_f1_threshold(labels, probs, tolerance=tolerance)
    stage_array = np.asarray(stages)
    out = {}
    for stage in ("input", "output"):
        chosen = stage_array == stage
        enough = chosen.sum() >= _MIN_STAGE_ROWS and labels[chosen].sum() >= _MIN_STAGE_POSITIVES
        out[stage] = (
            best_f1_threshold(labels[chosen], probs[chosen], tolerance=tolerance)[0] if enough else overall
        )
        if not enough:
            logger.warning("too few dev rows for stage %s: using the overall threshold %.3f", stage, overall)
    return out


def calibrate(
    clause_logits: ArrayLike,
    labels: ArrayLike,
    stages: Sequence[str],
    *,
    severity_logits: ArrayLike | None = None,
    severity_targets: ArrayLike | None = None,
) -> tuple[Calibration, CalibrationReport]:
    """Fit the manifest's calibration on dev predictions.

    Args:
        clause_logits: Violation logits of dev clause rows.
        labels: Their 0/1 labels.
        stages: Their stages (``input``/``output``).
        severity_logits: ``[N, C, 3]`` cumulative logits of dev taxonomy rows.
        severity_targets: ``[N, C]`` severity ranks, ``-1`` unknown.

    Returns:
        The calibration and a report (temperatures, severity bias, thresholds, smECE before and after).
    """
    logits = np.asarray(clause_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    temperature = fit_temperature(logits, y)
    probs = _sigmoid(logits / temperature)
    thresholds = stage_thresholds(probs, y, stages)
    severity_temperature, severity_bias = 1.0, 0.0
    if severity_logits is not None and severity_targets is not None:
        sev = np.asarray(severity_logits, dtype=np.float64)
        targets = np.asarray(severity_targets)
        cumulative = (targets[..., None] >= np.arange(1, 4)).astype(np.float64)
        mask = np.broadcast_to((targets >= 0)[..., None], cumulative.shape).astype(np.float64)
        severity_temperature, severity_bias = fit_platt(sev, cumulative, mask)
    report = {
        "temperature": temperature,
        "severity_temperature": severity_temperature,
        "severity_bias": severity_bias,
        "smece_before": smooth_ece(y, _sigmoid(logits)),
        "smece_after": smooth_ece(y, probs),
        **{f"threshold_{stage}": value for stage, value in thresholds.items()},
    }
    calibration = Calibration(
        temperature=temperature,
        severity_temperature=severity_temperature,
        severity_bias=severity_bias,
        thresholds={"input": thresholds["input"], "output": thresholds["output"]},
    )
    return calibration, report
