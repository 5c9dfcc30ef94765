"""Tests of the I/O-free decision core: thresholds, action precedence, fail modes and verdict validation."""

from __future__ import annotations

import math

import pytest

from csrm_guard import CategoryRule, Policy, Rule, ScorerError, ScorerTimeout
from csrm_guard.guard._core import ACTION_ORDER, DecisionCore, reward_of
from csrm_guard.model.types import ClauseScore, Verdict

MESSAGES = [{"role": "user", "content": "hi"}]


def _policy(**fields: object) -> Policy:
    base: dict[str, object] = {
        "name": "core",
        "categories": {"violence": CategoryRule(max_severity="low"), "hate": CategoryRule(action="refuse")},
        "rules": (Rule(id="no-pricing", text="Do not quote prices.", action="monitor"),),
    }
    base.update(fields)
    return Policy(**base)  # type: ignore[arg-type]


def _verdict(scores: dict[str, float], *, threshold: float = 0.5, stage: str = "input") -> Verdict:
    clause_scores = tuple(ClauseScore(cid, "category", p) for cid, p in scores.items())
    p = max(scores.values(), default=0.0)
    return Verdict(stage, clause_scores, p, reward_of(p), threshold, "m", 1.0)  # type: ignore[arg-type]


class TestDecide:
    def test_below_threshold_allows(self) -> None:
        """A verdict with every clause under the threshold is allowed with no violations."""
        core = DecisionCore(_policy())
        decision = core.decide("input", _verdict({"violence": 0.49}), request_id="r", latency_ms=2.0)
        assert (decision.outcome, decision.allowed, decision.violations) == ("allow", True, ())

    def test_at_threshold_violates(self) -> None:
        """A clause exactly at the threshold counts as violated and the stage action applies."""
        core = DecisionCore(_policy())
        decision = core.decide("input", _verdict({"violence": 0.5}), request_id="r", latency_ms=2.0)
        assert decision.outcome == "block"
        assert [v.id for v in decision.violations] == ["violence"]

    def test_policy_threshold_overrides_model(self) -> None:
        """The stage's own threshold replaces the model's recommended one."""
        core = DecisionCore(_policy(input={"threshold": 0.9}))
        decision = core.decide("input", _verdict({"violence": 0.8}), request_id="r", latency_ms=1.0)
        assert decision.allowed
        assert decision.threshold == 0.9

    def test_strictest_clause_action_wins(self) -> None:
        """With a refuse clause and a monitor clause violated, refuse wins and the refusal text is
        rendered."""
        core = DecisionCore(_policy(input={"action": "monitor"}))
        verdict = _verdict({"hate": 0.7, "no-pricing": 0.9})
        decision = core.decide("input", verdict, request_id="r", latency_ms=1.0)
        assert decision.outcome == "refuse"
        assert decision.refusal == "I can't help with that request."
        assert [v.id for v in decision.violations] == ["no-pricing", "hate"]  # most probable first

    @pytest.mark.parametrize("action", [a.value for a in ACTION_ORDER])
    def test_stage_action_becomes_outcome(self, action: str) -> None:
        """Each stage action is the outcome of a violation; only monitor leaves the call allowed."""
        core = DecisionCore(_policy(output={"action": action}))
        decision = core.decide(
            "output", _verdict({"violence": 0.9}, stage="output"), request_id="r", latency_ms=1
        )
        assert decision.outcome == action
        assert decision.allowed is (action == "monitor")

    def test_decision_carries_identity(self) -> None:
        """The decision names the policy, its rendered hash, the model and the request."""
        core = DecisionCore(_policy(version="7"))
        decision = core.decide("input", _verdict({}), request_id="req-1", latency_ms=1.0)
        assert (decision.policy_name, decision.policy_version) == ("core", "7")
        assert decision.policy_hash == core.rendered.hash
        assert (decision.model_id, decision.request_id) == ("m", "req-1")


class TestFail:
    def test_closed_is_a_violation_with_error(self) -> None:
        """Failing closed takes the stage action and records the error."""
        core = DecisionCore(_policy(output={"action": "refuse"}))
        decision = core.fail("output", ScorerTimeout("slow"), request_id="r", latency_ms=5.0)
        assert (decision.outcome, decision.allowed, decision.violation_probability) == ("refuse", False, 1.0)
        assert decision.error == "ScorerTimeout: slow"
        assert decision.refusal is not None

    def test_open_allows_with_error(self) -> None:
        """Failing open allows the call and still records the error."""
        core = DecisionCore(_policy(input={"fail": "open"}))
        decision = core.fail("input", ScorerError("boom"), request_id="r", latency_ms=5.0)
        assert (decision.outcome, decision.allowed) == ("allow", True)
        assert decision.error == "ScorerError: boom"


class TestValidate:
    @pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 1.5])
    def test_unusable_probability_raises(self, bad: float) -> None:
        """NaN, infinite and out-of-range probabilities are scorer errors."""
        core = DecisionCore(_policy())
        request = core.prepare("input", MESSAGES)
        verdict = Verdict("input", (ClauseScore("violence", "category", bad),), 0.1, 1.0, 0.5, "m", 1.0)
        with pytest.raises(ScorerError, match="probability"):
            core.validate(request, verdict)

    def test_unknown_clause_raises(self) -> None:
        """A score for a clause the policy does not have is a scorer error."""
        core = DecisionCore(_policy())
        verdict = _verdict({"nonexistent": 0.1})
        with pytest.raises(ScorerError, match="unknown clause"):
            core.validate(core.prepare("input", MESSAGES), verdict)

    def test_wrong_type_and_stage_raise(self) -> None:
        """A non-Verdict or a verdict for the other stage is a scorer error."""
        core = DecisionCore(_policy())
        request = core.prepare("input", MESSAGES)
        with pytest.raises(ScorerError, match="expected a Verdict"):
            core.validate(request, {"p": 0.1})
        with pytest.raises(ScorerError, match="stage"):
            core.validate(request, _verdict({}, stage="output"))


def test_reward_is_clipped_log_odds() -> None:
    """Reward is log((1-p)/p), finite at p=0 and p=1."""
    assert reward_of(0.5) == pytest.approx(0.0)
    assert reward_of(0.1) == pytest.approx(math.log(9))
    assert math.isfinite(reward_of(0.0))
    assert math.isfinite(reward_of(1.0))
    assert reward_of(1.0) < 0 < reward_of(0.0)
