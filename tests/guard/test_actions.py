"""Tests of the actions: regenerate with feedback, best_of_n selection, monitor, and input-stage fallbacks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from csrm_guard import ViolationError
from csrm_guard.testing import FakeScorer, capture_decisions

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello"}]
REFUSAL = "I can't help with that request."


def by_response(table: dict[str, float]) -> FakeScorer:
    """A scorer giving each judged response the probability listed for it (0.01 otherwise)."""

    def fn(clause: Any, transcript: str) -> float:
        judged = transcript.rsplit("[judged] Assistant: ", 1)[-1]
        return table.get(judged, 0.01)

    return FakeScorer(fn)


class Script:
    """A fake LLM returning scripted answers in order, recording the conversations it saw."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.seen: list[Any] = []

    def __call__(self, messages: Any) -> str:
        self.seen.append(list(messages))
        return self.answers[min(len(self.seen), len(self.answers)) - 1]


class TestRegenerate:
    async def test_second_attempt_is_returned(self, driver, guard_factory) -> None:
        """A violating answer is regenerated with the violation fed back, and the compliant retry returned."""
        guard = guard_factory(
            scorer=by_response({"bad": 0.9}), output={"action": "regenerate", "max_attempts": 3}
        )
        llm = Script("bad", "good")
        fn = guard.protect(stages=("output",))(driver.function(llm))
        assert await driver.call(fn, USER) == "good"
        assert len(llm.seen) == 2
        feedback = llm.seen[1][-1]
        assert feedback["role"] == "system"
        assert "violence" in feedback["content"]

    async def test_exhausted_attempts_refuse(self, driver, guard_factory) -> None:
        """When every attempt violates, max_attempts calls are made and the refusal is returned."""
        guard = guard_factory(
            scorer=by_response({"bad": 0.9}), output={"action": "regenerate", "max_attempts": 3}
        )
        llm = Script("bad")
        fn = guard.protect(stages=("output",))(driver.function(llm))
        with capture_decisions() as decisions:
            assert await driver.call(fn, USER) == REFUSAL
        assert len(llm.seen) == 3
        assert [d.outcome for d in decisions] == ["regenerate"] * 3

    async def test_retry_hitting_a_block_clause_raises(self, driver, guard_factory) -> None:
        """If a regenerated answer violates a clause whose action is block, the stricter action applies."""

        def fn(clause: Any, transcript: str) -> float:
            judged = transcript.rsplit("[judged]", 1)[-1]
            hit = {"bad": "sexual_minors", "worse": "violence"}.get(judged.split(": ", 1)[-1])
            return 0.9 if hit == clause.id else 0.0

        guard = guard_factory(
            scorer=FakeScorer(fn),
            categories={"violence": {"action": "block"}},
            output={"action": "regenerate", "max_attempts": 3},
        )
        fn_ = guard.protect(stages=("output",))(driver.function(Script("bad", "worse")))
        with pytest.raises(ViolationError) as info:
            await driver.call(fn_, USER)
        assert [v.id for v in info.value.decision.violations] == ["violence"]

    async def test_single_attempt_means_refuse(self, driver, guard_factory) -> None:
        """max_attempts=1 leaves no retry: the refusal comes back at once."""
        guard = guard_factory(
            scorer=by_response({"bad": 0.9}), output={"action": "regenerate", "max_attempts": 1}
        )
        llm = Script("bad", "good")
        fn = guard.protect(stages=("output",))(driver.function(llm))
        assert await driver.call(fn, USER) == REFUSAL
        assert len(llm.seen) == 1


class TestBestOfN:
    async def test_highest_reward_compliant_candidate(self, driver, guard_factory) -> None:
        """Of the candidates, the allowed one with the lowest violation probability is returned."""
        scorer = by_response({"bad": 0.9, "ok": 0.3, "best": 0.05, "worst": 0.99})
        guard = guard_factory(scorer=scorer, output={"action": "best_of_n", "candidates": 3})
        llm = Script("bad", "ok", "best", "worst")
        fn = guard.protect(stages=("output",))(driver.function(llm))
        assert await driver.call(fn, USER) == "best"
        assert len(llm.seen) == 4

    async def test_no_compliant_candidate_refuses(self, driver, guard_factory) -> None:
        """When no candidate is allowed, the refusal is returned."""
        guard = guard_factory(
            scorer=by_response({"bad": 0.9}), output={"action": "best_of_n", "candidates": 2}
        )
        fn = guard.protect(stages=("output",))(driver.function(Script("bad")))
        assert await driver.call(fn, USER) == REFUSAL

    async def test_async_candidates_run_concurrently(self, guard_factory) -> None:
        """In async code, the n candidates are generated concurrently."""
        guard = guard_factory(
            scorer=by_response({"bad": 0.9}), output={"action": "best_of_n", "candidates": 4}
        )
        state = {"active": 0, "peak": 0, "calls": 0}

        @guard.protect(stages=("output",))
        async def llm(messages: Any) -> str:
            state["calls"] += 1
            first = state["calls"] == 1
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
            await asyncio.sleep(0.01)
            state["active"] -= 1
            return "bad" if first else "fine"

        assert await llm(USER) == "fine"
        assert state["peak"] == 4


class TestMonitorAndInput:
    async def test_monitor_never_interferes(self, driver, guard_factory, caplog) -> None:
        """monitor returns the violating output unchanged and logs a warning."""
        guard = guard_factory(output={"action": "monitor"})
        fn = guard.protect(driver.function(lambda messages: "FORBIDDEN output"))
        with caplog.at_level(logging.WARNING, logger="csrm_guard"):
            assert await driver.call(fn, USER) == "FORBIDDEN output"
        assert "monitor: would have acted on violence" in caplog.text

    @pytest.mark.parametrize("action", ["regenerate", "best_of_n", "refuse"])
    async def test_input_stage_actions_refuse(self, driver, guard_factory, action) -> None:
        """At the input stage, regenerate and best_of_n fall back to a refusal (nothing to regenerate yet)."""
        guard = guard_factory(input={"action": action})
        fn = guard.protect(driver.function(lambda messages: "never"))
        assert await driver.call(fn, [{"role": "user", "content": "FORBIDDEN"}]) == REFUSAL
