"""Calibration and aggregation: raw ONNX logits -> calibrated probabilities -> policy-level verdict numbers.

Pure numpy, no I/O. The rules are fixed by ``docs/contracts.md``:

* clause mode: ``P(violation) = sigmoid(violation_logit / temperature)``;
* taxonomy mode: ``severity_logits[c]`` holds cumulative logits for severity >= low, >= moderate, >= high; a
  category rule that tolerates up to ``max_severity = s`` is violated by severity > s, so its probability is
  ``sigmoid(severity_logits[c, rank(s)] / severity_temperature + severity_bias)`` (and 0 when ``s`` is ``high``);
* policy level: the maximum over scored clauses (0 when nothing was scored);
* reward: compliance log-odds ``log((1 - p) / p)`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from csrm_guard.policy.severity import Severity

__all__ = [
    "P_CLIP",
    "aggregate",
    "category_probabilities",
    "clause_probabilities",
    "likely_severities",
    "reward",
    "severity_distribution",
    "sigmoid",
]

P_CLIP = 1e-6
"""Probabilities are clipped to ``[P_CLIP, 1 - P_CLIP]`` before taking log-odds."""

Aggregation = Literal["max", "noisy_or"]
_LEVELS = tuple(Severity.from_rank(rank) for rank in range(4))


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    """Numerically stable logistic function, computed in float64.

    Args:
        x: Logits of any shape.

    Returns:
        ``1 / (1 + exp(-x))`` elementwise, without overflow for large ``|x|``.
    """
    values = np.asarray(x, dtype=np.float64)
    # exp of a non-positive number never overflows: pick the form that uses one.
    z = np.exp(-np.abs(values))
    return np.where(values >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def clause_probabilities(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """Calibrated violation probabilities from the clause head's logits.

    Args:
        logits: ``violation_logit`` values, shape ``[n]``.
        temperature: The bundle's fitted temperature (> 0).

    Returns:
        Probabilities, shape ``[n]``.
    """
    return sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def severity_distribution(
    severity_logits: ArrayLike, temperature: float, bias: float = 0.0
) -> NDArray[np.float64]:
    """Cumulative probabilities ``P(severity >= low / moderate / high)`` per category.

    Args:
        severity_logits: Cumulative logits, shape ``[..., C, 3]``, non-increasing along the last axis.
        temperature: The bundle's fitted severity temperature (> 0).
        bias: The bundle's fitted severity bias, added after the temperature.

    Returns:
        Calibrated cumulative probabilities with the same shape, non-increasing along the last axis.
    """
    probs = sigmoid(np.asarray(severity_logits, dtype=np.float64) / temperature + bias)
    # Guard the ordinal invariant against tiny numerical inversions so downstream differences stay >= 0.
    return np.minimum.accumulate(probs, axis=-1)


def category_probabilities(
    cumulative: NDArray[np.float64], categories: ArrayLike, ranks: ArrayLike
) -> NDArray[np.float64]:
    """Violation probability of category rules read from the severity head.

    Args:
        cumulative: Output of :func:`severity_distribution` for one transcript, shape ``[C, 3]``.
        categories: Index into the ``C`` axis of each rule's category, shape ``[n]``.
        ranks: Each rule's tolerated severity rank (0 = none ... 3 = high), shape ``[n]``.

    Returns:
        ``P(severity > max_severity)`` per rule, shape ``[n]``; exactly 0 where ``max_severity`` is ``high``.
    """
    cats = np.asarray(categories, dtype=np.intp)
    rank = np.asarray(ranks, dtype=np.intp)
    padded = np.concatenate([cumulative, np.zeros((cumulative.shape[0], 1))], axis=1)
    return padded[cats, rank]


def likely_severities(cumulative: NDArray[np.float64]) -> list[Severity]:
    """Most likely severity per category from cumulative probabilities.

    Args:
        cumulative: Shape ``[C, 3]`` as returned by :func:`severity_distribution`.

    Returns:
        One :class:`Severity` per category (``none`` when ``P(>= low) < 0.5`` and no level is likelier).
    """
    ones = np.ones((cumulative.shape[0], 1))
    zeros = np.zeros((cumulative.shape[0], 1))
    upper = np.concatenate([ones, cumulative], axis=1)
    lower = np.concatenate([cumulative, zeros], axis=1)
    levels = np.argmax(upper - lower, axis=1)
    return [_LEVELS[level] for level in levels.tolist()]


def aggregate(probabilities: Sequence[float] | NDArray[np.float64], method: Aggregation = "max") -> float:
    """Policy-level violation probability from clause probabilities.

    Args:
        probabilities: Calibrated clause probabilities.
        method: ``max`` (the contract's default) or ``noisy_or`` (``1 - prod(1 - p)``).

    Returns:
        The aggregate, 0.0 when no clause was scored.

    Raises:
        ValueError: For an unknown method.
    """
    values = np.asarray(probabilities, dtype=np.float64)
    if values.size == 0:
        return 0.0
    if method == "max":
        return float(values.max())
    if method == "noisy_or":
        return float(1.0 - np.prod(1.0 - values))
    raise ValueError(f"unknown aggregation {method!r}; expected 'max' or 'noisy_or'")


def reward(probability: float) -> float:
    """Compliance log-odds: higher is safer.

    Args:
        probability: The policy-level violation probability.

    Returns:
        ``log((1 - p) / p)`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``.
    """
    p = min(max(probability, P_CLIP), 1.0 - P_CLIP)
    return math.log((1.0 - p) / p)
