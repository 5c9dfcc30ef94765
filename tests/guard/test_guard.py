"""Tests of the Guard's sync and async check drivers: decisions, timeouts, fail modes, cancellation,
lifecycle."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import pytest

import csrm_guard.model as model_pkg
from csrm_guard import InputError, Policy
from csrm_guard.guard import Guard
from csrm_guard.testing import FakeScorer, StaticScorer, assert_decision, capture_decisions

USER = [{"role": "user", "content": "hello there"}]
BAD = [{"role": "user", "content": "tell me something FORBIDDEN"}]

pytestmark = pytest.mark.anyio


def _guard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("csrm-guard")]


class TestChecks:
    async def test_input_allow_and_block(self, driver, guard_factory) -> None:
        """A clean user turn is allowed; one carrying the marker is blocked with its violation named."""
        guard = guard_factory()
        assert_decision(await driver.check_input(guard, USER), outcome="allow", allowed=True)
        assert_decision(await driver.check_input(guard, BAD), outcome="block", violations=["violence"])

    async def test_output_judges_the_response(self, driver, guard_factory) -> None:
        """check_output judges the response, not the user turn."""
        guard = guard_factory()
        assert (await driver.check_output(guard, BAD, "a harmless answer")).allowed
        assert not (await driver.check_output(guard, USER, "FORBIDDEN answer")).allowed

    async def test_request_id_is_kept_or_generated(self, driver, guard_factory) -> None:
        """A given request id is carried through; otherwise each check gets a fresh one."""
        guard = guard_factory()
        assert (await driver.check_input(guard, USER, request_id="abc")).request_id == "abc"
        first, second = [await driver.check_input(guard, USER) for _ in range(2)]
        assert first.request_id != second.request_id
        assert len(first.request_id) == 32

    async def test_disabled_stage_skips_scoring(self, driver, guard_factory, fake_scorer) -> None:
        """A disabled stage allows without calling the scorer."""
        guard = guard_factory(input={"enabled": False})
        assert_decision(await driver.check_input(guard, BAD), outcome="allow")
        assert fake_scorer.calls == []

    async def test_malformed_messages_raise_input_error(self, driver, guard_factory) -> None:
        """Malformed input is the caller's error, not a fail-mode case."""
        guard = guard_factory(input={"fail": "open"})
        with pytest.raises(InputError, match=r"messages\[0\]\.role"):
            await driver.check_input(guard, [{"role": "robot", "content": "x"}])

    async def test_async_scorer_function(self, driver, guard_factory) -> None:
        """An async scoring function works from sync and async checks alike."""

        async def fn(clause: Any, transcript: str) -> float:
            await asyncio.sleep(0)
            return 0.9 if "FORBIDDEN" in transcript else 0.1

        guard = guard_factory(scorer=FakeScorer(fn))
        assert (await driver.check_input(guard, BAD)).outcome == "block"

    async def test_latency_is_measured(self, driver, guard_factory) -> None:
        """latency_ms covers the scorer's time."""

        def slow(clause: Any, transcript: str) -> float:
            time.sleep(0.02)
            return 0.0

        guard = guard_factory(scorer=FakeScorer(slow))
        assert (await driver.check_input(guard, USER)).latency_ms >= 20


def _raising(clause: Any, transcript: str) -> float:
    raise RuntimeError("model exploded")


def _nan(clause: Any, transcript: str) -> float:
    return math.nan


class TestFailModes:
    @pytest.mark.parametrize(("fn", "error"), [(_raising, "ScorerError"), (_nan, "ScorerError")])
    @pytest.mark.parametrize("fail", ["closed", "open"])
    async def test_broken_scorer(self, driver, guard_factory, caplog, fn, error, fail) -> None:
        """A raising or NaN scorer applies the fail mode, sets error, and logs a warning."""
        guard = guard_factory(scorer=FakeScorer(fn), input={"fail": fail, "action": "refuse"})
        with caplog.at_level(logging.WARNING, logger="csrm_guard.guard.guard"):
            decision = await driver.check_input(guard, USER)
        expected = "refuse" if fail == "closed" else "allow"
        assert_decision(decision, outcome=expected, error=True)
        assert decision.error is not None
        assert decision.error.startswith(error)
        assert f"fail mode decided {expected}" in caplog.text

    @pytest.mark.parametrize("fail", ["closed", "open"])
    async def test_hanging_scorer_times_out(self, driver, guard_factory, caplog, fail) -> None:
        """A scorer hanging past timeout_ms gets a ScorerTimeout decision within about the timeout."""
        release = threading.Event()

        def hang(clause: Any, transcript: str) -> float:
            release.wait(5)
            return 0.0

        guard = guard_factory(scorer=FakeScorer(hang), input={"fail": fail, "timeout_ms": 50})
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            decision = await driver.check_input(guard, USER)
        release.set()
        assert time.perf_counter() - started < 1.0
        assert decision.error is not None
        assert decision.error.startswith("ScorerTimeout")
        assert decision.allowed is (fail == "open")
        assert "ScorerTimeout" in caplog.text

    async def test_async_scorer_hang_times_out(self, guard_factory) -> None:
        """An async scorer that never answers is cancelled at the deadline and leaves no task behind."""

        async def never(clause: Any, transcript: str) -> float:
            await asyncio.Event().wait()
            return 0.0

        guard = guard_factory(scorer=FakeScorer(never), input={"timeout_ms": 30})
        before = len(asyncio.all_tasks())
        decision = await guard.acheck_input(USER)
        assert decision.outcome == "block"
        assert decision.error is not None
        assert len(asyncio.all_tasks()) == before

    async def test_violation_is_never_failed_open(self, driver, guard_factory) -> None:
        """fail=open does not turn a real violation into an allow."""
        guard = guard_factory(input={"fail": "open"})
        assert_decision(await driver.check_input(guard, BAD), outcome="block", error=False)


class TestCancellation:
    async def test_cancel_mid_check_leaves_nothing_behind(self, guard_factory) -> None:
        """Cancelling an async check mid-score leaves no task, no decision and, after close, no thread."""
        entered, release = threading.Event(), threading.Event()

        class SyncOnly:
            def score(self, request: Any) -> Any:
                entered.set()
                release.wait(5)
                return StaticScorer(0.0).score(request)

            def close(self) -> None:
                pass

        guard = guard_factory(scorer=SyncOnly())
        baseline = set(asyncio.all_tasks())
        with capture_decisions() as decisions:
            task = asyncio.create_task(guard.acheck_input(USER))
            while not entered.is_set():
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        release.set()
        assert decisions == []
        assert set(asyncio.all_tasks()) == baseline
        guard.close()
        for thread in _guard_threads():
            thread.join(2)
        assert _guard_threads() == []


class TestLifecycle:
    def test_context_manager_closes_owned_scorer_only(self) -> None:
        """A user-supplied scorer is not closed by the guard; the worker threads are stopped."""
        scorer = StaticScorer(0.0)
        with Guard(Policy(name="life"), scorer=scorer) as guard:
            guard.check_input(USER)
        assert not scorer.closed
        for thread in _guard_threads():
            thread.join(2)
        assert _guard_threads() == []

    async def test_async_context_manager(self) -> None:
        """async with closes the guard."""
        async with Guard(Policy(name="life"), scorer=StaticScorer(0.0)) as guard:
            assert (await guard.acheck_input(USER)).allowed
        guard.close()  # idempotent

    def test_policy_path_is_loaded(self, tmp_path) -> None:
        """A policy file path is loaded into a Policy."""
        path = tmp_path / "policy.yaml"
        path.write_text("api_version: csrm-guard/v1\nname: from-file\n", encoding="utf-8")
        with Guard(path, scorer=StaticScorer(0.0)) as guard:
            assert guard.policy.name == "from-file"
            assert "from-file" in repr(guard)

    def test_default_model_loads_lazily(self, monkeypatch) -> None:
        """Without a scorer the bundle is loaded on first use through OnnxScorer.load(model)."""
        loaded: list[Any] = []

        class FakeOnnx:
            @classmethod
            def load(cls, path: Any) -> StaticScorer:
                loaded.append(path)
                return StaticScorer(0.0)

        monkeypatch.setattr(model_pkg, "OnnxScorer", FakeOnnx, raising=False)
        guard = Guard(Policy(name="lazy"), "some/bundle")
        assert loaded == []
        guard.check_input(USER)
        guard.check_input(USER)
        assert loaded == ["some/bundle"]
        guard.close()
