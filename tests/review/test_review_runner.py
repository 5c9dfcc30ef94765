from __future__ import annotations

import math
from pathlib import Path

import pytest

from csrm_guard.errors import BundleError
from csrm_guard.guard import Guard
from csrm_guard.policy import Policy, PolicyTest
from csrm_guard.review.runner import TEST_TIMEOUT_MS, GuardPool, check_expectation, run_policy_tests
from csrm_guard.testing import FakeScorer, StaticScorer


def _decision(policy: Policy, scorer: FakeScorer, content: str = "hi"):
    with Guard(policy, scorer=scorer) as guard:
        return guard.check_input([{"role": "user", "content": content}])


def _case(**fields) -> PolicyTest:
    return PolicyTest(name="c", messages=[{"role": "user", "content": "hi"}], **fields)


class TestCheckExpectation:
    def test_violation_matches_any_non_allow_outcome(self):
        """'violation' accepts block, refuse, monitor ... but not allow."""
        policy = Policy(name="p", input={"action": "monitor"})
        violated = _decision(policy, StaticScorer({"sexual_minors": 0.9}))
        assert violated.outcome == "monitor"
        assert check_expectation(_case(expect="violation"), violated) == ()
        allowed = _decision(policy, StaticScorer(0.0))
        assert check_expectation(_case(expect="violation"), allowed) == ("expected a violation, got allow",)

    def test_exact_outcome(self):
        """An outcome expectation must match the outcome exactly."""
        decision = _decision(
            Policy(name="p", input={"action": "refuse"}), StaticScorer({"sexual_minors": 0.9})
        )
        assert check_expectation(_case(expect="refuse"), decision) == ()
        assert check_expectation(_case(expect="block"), decision) == ("expected block, got refuse",)

    def test_listed_violations_must_be_present(self):
        """Every listed id must be among the violated clauses; others may be too."""
        policy = Policy(name="p", categories={"violence": {}, "hate": {}})
        decision = _decision(policy, StaticScorer({"violence": 0.8, "hate": 0.7}))
        assert check_expectation(_case(expect="block", violations=("violence",)), decision) == ()
        failures = check_expectation(_case(expect="block", violations=("violence", "weapons")), decision)
        assert failures == ("expected violations weapons not found",)

    def test_probability_bounds(self):
        """min_probability and max_probability bound the policy-level probability."""
        decision = _decision(Policy(name="p"), StaticScorer({"sexual_minors": 0.3}))
        assert check_expectation(_case(expect="allow", max_probability=0.5), decision) == ()
        (low,) = check_expectation(_case(expect="allow", max_probability=0.2), decision)
        assert "0.300 > max_probability 0.2" in low
        (high,) = check_expectation(_case(expect="allow", min_probability=0.4), decision)
        assert "0.300 < min_probability 0.4" in high


class TestRunPolicyTests:
    def test_all_pass_with_a_scorer_that_agrees(self, bank_dir: Path, marker_scorer: FakeScorer):
        """Every case of the bank policy passes with the marker scorer."""
        run = run_policy_tests([bank_dir.parent], scorer=marker_scorer)
        assert [r.status for r in run.results] == ["passed"] * 4
        assert run.ok
        assert run.policies == 1

    def test_each_case_uses_its_policys_settings(self, bank_dir: Path, marker_scorer: FakeScorer):
        """The output case is checked at the output stage with the policy's rules."""
        run = run_policy_tests([bank_dir], scorer=marker_scorer, pattern="competitor")
        (result,) = run.results
        assert result.decision is not None
        assert result.decision.stage == "output"
        assert [v.id for v in result.decision.violations] == ["no-competitors"]
        assert run.deselected == 3

    def test_failure_keeps_the_decision(self, bank_dir: Path):
        """A failing case reports why, with the decision that caused it."""
        run = run_policy_tests([bank_dir], scorer=StaticScorer(0.0), pattern="fraud")
        (result,) = run.results
        assert result.status == "failed"
        assert result.failures[0] == "expected block, got allow"
        assert result.decision is not None
        assert result.decision.outcome == "allow"
        assert not run.ok

    def test_scorer_error_is_an_error_not_a_failure(self, bank_dir: Path):
        """When the scorer returns NaN the case errors: no decision could be reached."""
        run = run_policy_tests([bank_dir], scorer=FakeScorer(lambda clause, transcript: math.nan))
        assert {r.status for r in run.results} == {"error"}
        assert "no decision could be reached" in (run.results[0].error or "")

    def test_no_tests_is_not_ok(self, tmp_path: Path):
        """A run that finds no case is not ok, so 'no tests' fails by default."""
        (tmp_path / "policy.yaml").write_text("name: empty\n")
        run = run_policy_tests([tmp_path], scorer=StaticScorer(0.0))
        assert run.results == ()
        assert not run.ok
        assert run.policies == 1

    def test_one_scorer_is_shared_and_not_closed(self, bank_dir: Path, marker_scorer: FakeScorer):
        """A scorer passed in is used for every case and left open for its owner."""
        run_policy_tests([bank_dir], scorer=marker_scorer)
        assert len(marker_scorer.calls) == 4
        assert not marker_scorer.closed

    def test_broken_bundle_fails_the_run(self, bank_dir: Path, tmp_path: Path):
        """A model bundle that cannot load raises once instead of erroring every case."""
        with pytest.raises(BundleError):
            run_policy_tests([bank_dir], model=tmp_path / "no-bundle")


class TestXfail:
    def test_missed_expectation_is_xfailed_and_keeps_the_run_green(
        self, xfail_dir: Path, marker_scorer: FakeScorer
    ):
        """A marked case whose decision misses is xfailed, keeps its failure messages and does not fail the run."""
        run = run_policy_tests([xfail_dir], scorer=marker_scorer, pattern="greeting|battle")
        assert [r.status for r in run.results] == ["passed", "xfailed"]
        xfailed = run.results[1]
        assert xfailed.failures == ("expected allow, got block",)
        assert xfailed.messages == xfailed.failures
        assert not xfailed.passed
        assert xfailed.ok
        assert run.ok
        assert (run.count("passed"), run.count("xfailed"), run.count("failed")) == (1, 1, 0)

    def test_met_expectation_is_xpassed_and_fails_the_run(self, xfail_dir: Path, marker_scorer: FakeScorer):
        """A marked case that meets its expectations is xpassed: a failure asking to remove the marker."""
        run = run_policy_tests([xfail_dir], scorer=marker_scorer)
        statuses = {r.case.test.name: r.status for r in run.results}
        assert statuses == {
            "greeting": "passed",
            "fraud is blocked": "passed",
            "story with a fistfight": "passed",
            "competitor recommendation": "passed",
            "battle history": "xfailed",
            "fixed limitation": "xpassed",
        }
        xpassed = next(r for r in run.results if r.status == "xpassed")
        assert xpassed.failures == ()
        assert xpassed.messages == (
            'passed, but is marked xfail ("the model used to miss cheque fraud"): remove the marker',
        )
        assert not xpassed.ok
        assert not run.ok
        assert (run.count("passed"), run.count("xfailed"), run.count("xpassed")) == (4, 1, 1)

    def test_an_undecidable_marked_case_is_an_error(self, xfail_dir: Path):
        """No decision is an error whether or not the case is marked xfail."""
        nan = FakeScorer(lambda clause, transcript: math.nan)
        run = run_policy_tests([xfail_dir], scorer=nan, pattern="battle|fixed")
        assert [r.status for r in run.results] == ["error", "error"]
        assert not run.ok

    def test_only_xfailed_cases_is_ok(self, xfail_dir: Path, marker_scorer: FakeScorer):
        """A run whose every case xfails is ok: at least one case ran and none failed the run."""
        run = run_policy_tests([xfail_dir], scorer=marker_scorer, pattern="battle")
        assert [r.status for r in run.results] == ["xfailed"]
        assert run.ok


def test_pool_loads_the_scorer_once(monkeypatch: pytest.MonkeyPatch, bank_dir: Path):
    """GuardPool.load_scorer is called once per run, and what it loaded is closed at the end."""
    loaded: list[FakeScorer] = []

    def load(model):
        loaded.append(StaticScorer(0.0))
        return loaded[-1]

    monkeypatch.setattr(GuardPool, "load_scorer", staticmethod(load))
    run_policy_tests([bank_dir])
    assert len(loaded) == 1
    assert loaded[0].closed


def test_checks_get_a_patient_timeout(bank_dir: Path):
    """Stage timeouts are raised to TEST_TIMEOUT_MS so a slow machine cannot decide a case by fail mode."""
    policy = Policy(name="p", input={"timeout_ms": 5})
    with GuardPool(scorer=StaticScorer(0.0)).opened() as pool:
        assert pool.guard(policy).policy.input.timeout_ms == TEST_TIMEOUT_MS
    with GuardPool(scorer=StaticScorer(0.0), min_timeout_ms=None).opened() as pool:
        assert pool.guard(policy).policy.input.timeout_ms == 5
