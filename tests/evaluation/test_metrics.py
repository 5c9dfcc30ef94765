"""Tests for the evaluation metrics against hand-checked cases and independent formulas."""

from __future__ import annotations

import numpy as np
import pytest

from csrm_guard.evaluation import metrics
from csrm_guard.evaluation.metrics import (
    auprc,
    best_f1_threshold,
    binary_scores,
    monotonicity_violation_rate,
    over_refusal_rate,
    pair_accuracy,
    smooth_ece,
)


class TestBinaryScores:
    def test_counts_by_hand(self):
        """Two true positives, one false positive and one false negative give P = R = F1 = 2/3."""
        scores = binary_scores([1, 1, 1, 0, 0], [0.9, 0.6, 0.2, 0.7, 0.1], threshold=0.5)
        assert scores.precision == pytest.approx(2 / 3)
        assert scores.recall == pytest.approx(2 / 3)
        assert scores.f1 == pytest.approx(2 / 3)
        assert (scores.n, scores.positives) == (5, 3)

    def test_no_predicted_positive_is_zero_not_nan(self):
        """With nothing flagged, precision, recall and F1 are 0."""
        assert binary_scores([1, 0], [0.1, 0.2]).f1 == 0.0

    def test_length_mismatch_raises(self):
        """Labels and scores of different lengths are rejected."""
        with pytest.raises(ValueError, match="differ in length"):
            binary_scores([1, 0], [0.5])


class TestAuprc:
    def test_perfect_ranking_is_one(self):
        """Positives ranked above every negative give AUPRC 1."""
        assert auprc([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.9]) == pytest.approx(1.0)

    def test_matches_average_precision_by_hand(self):
        """Ranking +,-,+ gives AP = (1/1 + 2/3) / 2."""
        assert auprc([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 + 2 / 3) / 2)

    def test_ties_share_one_threshold(self):
        """Tied scores are one threshold: all-equal scores give the positive rate."""
        assert auprc([1, 0, 0, 1], [0.5] * 4) == pytest.approx(0.5)

    def test_no_positive_is_nan(self):
        """Without positives AUPRC is undefined."""
        assert np.isnan(auprc([0, 0], [0.1, 0.2]))


def test_best_threshold_reaches_reported_f1():
    """The chosen threshold reproduces the F1 it reports and beats other cut points."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 300), 0, 1)
    threshold, f1 = best_f1_threshold(labels, probs)
    assert binary_scores(labels, probs, threshold).f1 == pytest.approx(f1)
    for other in (0.2, 0.4, 0.6, 0.8):
        assert binary_scores(labels, probs, other).f1 <= f1 + 1e-12


def test_best_f1_threshold_tolerance_takes_the_highest_near_best_threshold():
    """Within the tolerance of the best F1, the highest threshold wins; without it, the argmax does."""
    labels = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0]
    probs = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1]
    # Cutting below 0.4 catches all five positives: F1 10/11 = 0.909; cutting below 0.6: 8/9 = 0.889.
    threshold, f1 = best_f1_threshold(labels, probs)
    assert (threshold, f1) == (pytest.approx(0.35), pytest.approx(10 / 11))
    threshold, f1 = best_f1_threshold(labels, probs, tolerance=0.03)
    assert (threshold, f1) == (pytest.approx(0.55), pytest.approx(8 / 9))
    assert best_f1_threshold(labels, probs, tolerance=0.01)[0] == pytest.approx(0.35)


class TestSmoothEce:
    def test_calibrated_is_small_and_miscalibrated_is_large(self):
        """Probabilities drawn as the true rate score near 0; squashing them toward 1 scores high."""
        rng = np.random.default_rng(1)
        p = rng.uniform(size=4000)
        y = (rng.uniform(size=4000) < p).astype(int)
        assert smooth_ece(y, p) < 0.03
        assert smooth_ece(y, np.sqrt(np.sqrt(p))) > 0.15

    def test_fallback_kernel_agrees_with_relplot_roughly(self):
        """The numpy fallback is within a few points of relplot's smECE on the same data."""
        rng = np.random.default_rng(2)
        p = rng.uniform(size=2000)
        y = (rng.uniform(size=2000) < p**2).astype(int)
        ours = metrics._kernel_smece(y, p)
        assert ours == pytest.approx(smooth_ece(y, p), abs=0.03)


class TestPairs:
    def test_pair_accuracy_counts_ties_half(self):
        """One win, one loss and one tie give 0.5."""
        assert pair_accuracy([0.9, 0.1, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.5)

    def test_monotonicity_ignores_noise_below_tolerance(self):
        """A stricter probability lower by less than the tolerance is not a violation."""
        assert monotonicity_violation_rate([0.5, 0.2], [0.50001, 0.4], tolerance=1e-4) == pytest.approx(0.5)


def test_over_refusal_is_flag_rate_on_benign_rows():
    """Over-refusal counts flagged benign rows only."""
    assert over_refusal_rate([0, 0, 0, 1], [0.9, 0.1, 0.6, 0.9], 0.5) == pytest.approx(2 / 3)
