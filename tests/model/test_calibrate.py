"""Tests for csrm_guard.model.calibrate: sigmoid, temperatures, severity heads, aggregation and reward."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from csrm_guard.model import calibrate
from csrm_guard.policy.severity import Severity


class TestSigmoid:
    def test_matches_the_formula(self):
        """The stable form equals 1 / (1 + exp(-x)) where the formula does not overflow."""
        x = np.linspace(-30, 30, 61)
        assert np.allclose(calibrate.sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-12)

    def test_extremes_do_not_overflow(self):
        """Huge logits give exactly 0 or 1 without warnings."""
        assert calibrate.sigmoid([-1e4, 1e4]).tolist() == [0.0, 1.0]

    def test_temperature_divides_the_logit(self):
        """A temperature of 2 halves the logit before the sigmoid."""
        assert calibrate.clause_probabilities([4.0], 2.0)[0] == pytest.approx(calibrate.sigmoid(2.0))


class TestSeverity:
    def test_cumulative_probabilities_are_non_increasing(self):
        """P(>= low) >= P(>= moderate) >= P(>= high) after calibration, even for inverted logits."""
        logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.1, -3.0]])
        cumulative = calibrate.severity_distribution(logits, 1.5)
        assert (np.diff(cumulative, axis=-1) <= 0).all()
        assert cumulative[0, 0] == pytest.approx(calibrate.sigmoid(2.0 / 1.5))

    def test_bias_is_added_after_the_temperature(self):
        """The severity bias shifts every cumulative logit after dividing by the temperature."""
        cumulative = calibrate.severity_distribution(np.array([[2.0, 0.0, -1.0]]), 2.0, 1.5)
        assert cumulative[0].tolist() == pytest.approx(calibrate.sigmoid([2.5, 1.5, 1.0]).tolist())

    def test_category_probability_reads_the_tolerated_rank(self):
        """max_severity none reads P(>= low), moderate reads P(>= high), high is never violated."""
        cumulative = np.array([[0.9, 0.5, 0.2], [0.3, 0.2, 0.1]])
        probs = calibrate.category_probabilities(cumulative, [0, 0, 0, 0, 1], [0, 1, 2, 3, 1])
        assert probs.tolist() == [0.9, 0.5, 0.2, 0.0, 0.2]

    def test_likely_severity_is_the_most_probable_level(self):
        """The level with the largest mass between adjacent cumulative probabilities wins."""
        cumulative = np.array([[0.9, 0.8, 0.7], [0.1, 0.05, 0.0], [0.9, 0.2, 0.1]])
        assert calibrate.likely_severities(cumulative) == [Severity.HIGH, Severity.NONE, Severity.LOW]


class TestAggregate:
    def test_max_is_the_contract(self):
        """The default aggregate is the maximum clause probability, 0 with no clauses."""
        assert calibrate.aggregate([0.1, 0.7, 0.3]) == 0.7
        assert calibrate.aggregate([]) == 0.0

    def test_noisy_or(self):
        """noisy_or combines independent clause probabilities."""
        assert calibrate.aggregate([0.5, 0.5], "noisy_or") == pytest.approx(0.75)

    def test_unknown_method_is_rejected(self):
        """An unknown aggregation names the valid ones."""
        with pytest.raises(ValueError, match="noisy_or"):
            calibrate.aggregate([0.5], "mean")  # type: ignore[arg-type]


class TestReward:
    def test_half_is_zero(self):
        """p = 0.5 has zero log-odds."""
        assert calibrate.reward(0.5) == 0.0

    def test_clipped_at_the_extremes(self):
        """p = 0 and p = 1 are clipped to 1e-6 from the ends, so the reward stays finite."""
        assert calibrate.reward(0.0) == pytest.approx(math.log((1 - 1e-6) / 1e-6))
        assert calibrate.reward(1.0) == pytest.approx(-math.log((1 - 1e-6) / 1e-6))

    @given(st.floats(0, 1), st.floats(0, 1))
    def test_higher_violation_probability_never_raises_the_reward(self, p, q):
        """The reward is non-increasing in the violation probability."""
        low, high = sorted((p, q))
        assert calibrate.reward(low) >= calibrate.reward(high)
