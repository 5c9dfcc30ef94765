"""Tests for csrm_guard.training.calibration: temperature and Platt fits, and the calibration they produce."""

from __future__ import annotations

import numpy as np
import pytest

from csrm_guard.training.calibration import calibrate, fit_platt, fit_temperature


def _sample(temperature: float, bias: float, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn so that P(label = 1) = sigmoid(logit / temperature + bias)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, size)
    p = 1.0 / (1.0 + np.exp(-(logits / temperature + bias)))
    return logits, (rng.random(size) < p).astype(np.float64)


def test_temperature_is_recovered():
    """Labels drawn at temperature 2 give a fitted temperature near 2."""
    logits, labels = _sample(2.0, 0.0, 20_000)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.08)


def test_platt_recovers_temperature_and_bias():
    """Labels drawn at temperature 0.5 and bias 1.5 give both back; a temperature alone cannot move the bias."""
    logits, labels = _sample(0.5, 1.5, 20_000, seed=1)
    temperature, bias = fit_platt(logits, labels)
    assert temperature == pytest.approx(0.5, rel=0.1)
    assert bias == pytest.approx(1.5, abs=0.2)


def test_masked_cells_do_not_count():
    """Cells outside the mask are ignored, however wrong their labels are."""
    logits, labels = _sample(1.0, -1.0, 10_000, seed=2)
    flipped = np.concatenate([labels, 1.0 - labels])
    mask = np.concatenate([np.ones_like(labels), np.zeros_like(labels)])
    temperature, bias = fit_platt(np.concatenate([logits, logits]), flipped, mask)
    assert bias == pytest.approx(-1.0, abs=0.2)
    assert temperature == pytest.approx(1.0, rel=0.1)


def test_nothing_to_fit_gives_identity():
    """An all-zero mask leaves temperature 1 and bias 0."""
    assert fit_platt([1.0, 2.0], [0.0, 1.0], [0.0, 0.0]) == (1.0, 0.0)


def test_calibrate_fits_the_severity_bias():
    """Severity cells whose logits sit 2 below their true log-odds get a bias near +2 in the calibration."""
    rng = np.random.default_rng(3)
    clause_logits, labels = _sample(1.0, 0.0, 2_000, seed=4)
    stages = ["input", "output"] * 1_000
    true = rng.normal(0.0, 3.0, (3_000, 4, 1)) - np.array([0.0, 1.0, 2.0])
    # Ordinal draw: severity >= k with probability sigmoid(true[..., k - 1]), non-increasing in k.
    below = rng.random((3_000, 4, 1)) < 1.0 / (1.0 + np.exp(-true))
    targets = below.sum(axis=-1)
    targets[:, 3] = -1  # an unknown category: masked
    calibration, report = calibrate(
        clause_logits, labels, stages, severity_logits=true - 2.0, severity_targets=targets
    )
    assert calibration.severity_bias == pytest.approx(2.0, abs=0.35)
    assert report["severity_bias"] == calibration.severity_bias
