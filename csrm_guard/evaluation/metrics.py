"""Evaluation metrics on numpy arrays: F1, AUPRC, smooth ECE, strictness and monotonicity, over-refusal.

The positive class is *violation* throughout. Probabilities are calibrated violation probabilities; labels
are 0/1.
smECE (Blasiok and Nakkiran, "Smooth ECE", 2023) comes from :mod:`relplot` when it is installed (the ``eval``
extra); otherwise a small kernel-smoothing implementation with the same reflected Gaussian kernel and a fixed
bandwidth of 0.05 is used (close to relplot's, not identical: its bandwidth is chosen as a fixed point).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BinaryScores",
    "auprc",
    "best_f1_threshold",
    "binary_scores",
    "monotonicity_violation_rate",
    "over_refusal_rate",
    "pair_accuracy",
    "smooth_ece",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BinaryScores:
    """Threshold metrics of a binary classifier (positive class = violation).

    Attributes:
        f1: F1 of the violation class.
        precision: Precision of the violation class.
        recall: Recall of the violation class.
        n: Number of examples.
        positives: Number of labelled violations.
    """

    f1: float
    precision: float
    recall: float
    n: int
    positives: int


def _arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    return y, s


def binary_scores(labels: ArrayLike, probabilities: ArrayLike, threshold: float = 0.5) -> BinaryScores:
    """F1, precision and recall of ``probability >= threshold`` against ``labels``."""
    y, p = _arrays(labels, probabilities)
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryScores(f1, precision, recall, int(y.size), int(np.sum(y == 1)))


def auprc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (step interpolation, like scikit-learn).

    Returns:
        The average precision, or ``nan`` when there is no positive label.
    """
    y, s = _arrays(labels, scores)
    positives = int(np.sum(y == 1))
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]  # last index of each tied score group
    tp = np.cumsum(y_sorted)[distinct]
    predicted = distinct + 1
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(
    labels: ArrayLike, probabilities: ArrayLike, *, tolerance: float = 0.0
) -> tuple[float, float]:
    """The threshold that maximises F1 on these labels, and that F1.

    Candidate thresholds are the distinct probabilities; the chosen one is the midpoint between the best
    candidate and the next lower score, so that small shifts (int8 vs fp32) do not flip the boundary example.
    With ``tolerance``, the highest candidate whose F1 is within ``tolerance`` of the best is chosen instead (fewer
    false alarms for an F1 the fitting set cannot tell apart), and its F1 is returned.
    """
    y, p = _arrays(labels, probabilities)
    positives = int(np.sum(y == 1))
    if positives == 0 or y.size == 0:
        return 0.5, 0.0
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    distinct = np.r_[np.nonzero(np.diff(p_sorted))[0], y.size - 1]
    tp = np.cumsum(y_sorted)[distinct]
    f1 = 2 * tp / (distinct + 1 + positives)
    # The first candidate (in descending order, so the highest threshold) whose F1 is close enough to the best.
    best = int(np.argmax(f1 >= f1.max() - tolerance))
    upper = p_sorted[distinct[best]]
    lower = p_sorted[distinct[best] + 1] if distinct[best] + 1 < y.size else 0.0
    return float((upper + lower) / 2), float(f1[best])


def smooth_ece(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Smooth ECE of calibrated probabilities (relplot's ``smECE`` when available)."""
    y, p = _arrays(labels, probabilities)
    if y.size == 0:
        return float("nan")
    try:
        import relplot  # noqa: PLC0415 - optional, from the eval extra
    except ImportError:
        return _kernel_smece(y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # relplot warns about numerical details we cannot act on
        return float(relplot.smECE(p, y.astype(np.float64)))


def _kernel_smece(y: NDArray[np.int64], p: NDArray[np.float64], sigma: float = 0.05) -> float:
    """Kernel-smoothed calibration error: E|E[y - p | p~]| with a reflected Gaussian kernel on [0, 1]."""
    grid = np.linspace(0.0, 1.0, 201)
    residual = y - p
    weights = np.zeros((grid.size, p.size))
    for sign, shift in ((1, 0.0), (-1, 0.0), (-1, 2.0)):  # reflect at 0 and 1 so the edges keep their mass
        weights += np.exp(-((grid[:, None] - (sign * p[None, :] + shift)) ** 2) / (2 * sigma**2))
    density = weights.sum(axis=1)
    smoothed = (weights * residual[None, :]).sum(axis=1) / np.maximum(density, 1e-12)
    return float(np.sum(np.abs(smoothed) * density) / np.sum(density))


def pair_accuracy(stricter: ArrayLike, laxer: ArrayLike) -> float:
    """Share of pairs where the stricter clause gets the higher violation probability (ties count 0.5)."""
    s = np.asarray(stricter, dtype=np.float64).ravel()
    lx = np.asarray(laxer, dtype=np.float64).ravel()
    if s.size != lx.size:
        raise ValueError(f"stricter ({s.size}) and laxer ({lx.size}) differ in length")
    if s.size == 0:
        return float("nan")
    return float(np.mean((s > lx) + 0.5 * (s == lx)))


def monotonicity_violation_rate(stricter: ArrayLike, laxer: ArrayLike, tolerance: float = 1e-4) -> float:
    """Share of pairs where the stricter clause gets a *lower* violation probability than the laxer one.

    Args:
        stricter: Violation probabilities under the stricter clause.
        laxer: Violation probabilities under the laxer clause, same transcripts.
        tolerance: Differences smaller than this are not violations (int8 noise).
    """
    s = np.asarray(stricter, dtype=np.float64).ravel()
    lx = np.asarray(laxer, dtype=np.float64).ravel()
    if s.size != lx.size:
        raise ValueError(f"stricter ({s.size}) and laxer ({lx.size}) differ in length")
    if s.size == 0:
        return float("nan")
    return float(np.mean(s < lx - tolerance))


def over_refusal_rate(labels: ArrayLike, probabilities: ArrayLike, threshold: float = 0.5) -> float:
    """Share of benign examples (label 0) that would be blocked: the false-positive rate at ``threshold``."""
    y, p = _arrays(labels, probabilities)
    benign = y == 0
    if not np.any(benign):
        return float("nan")
    return float(np.mean(p[benign] >= threshold))
