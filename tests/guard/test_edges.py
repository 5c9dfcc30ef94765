"""Edge cases of the guard: partial stages, odd outputs, async-only scorers, lazy loading and helper failures."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import csrm_guard.model as model_pkg
from csrm_guard import InputError, Policy, ScorerTimeout, ViolationError
from csrm_guard.guard import Guard
from csrm_guard.guard._core import DecisionCore
from csrm_guard.guard._shapes import text_of, with_text, yield_annotation
from csrm_guard.guard.stream import StreamFeeder
from csrm_guard.model.types import Verdict
from csrm_guard.testing import FakeScorer, StaticScorer, assert_decision, capture_decisions

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hi"}]
BAD = [{"role": "user", "content": "FORBIDDEN"}]


class TestInputOnly:
    async def test_function_output_is_not_checked(self, driver, guard_factory) -> None:
        """stages=("input",) returns the output without an output check."""
        fn = guard_factory().protect(stages=("input",))(driver.function(lambda messages: "FORBIDDEN"))
        with capture_decisions() as decisions:
            assert await driver.call(fn, USER) == "FORBIDDEN"
        assert [d.stage for d in decisions] == ["input"]

    async def test_generators_pass_through(self, guard_factory) -> None:
        """Input-only generators yield the upstream unchanged."""
        guard = guard_factory()

        @guard.protect(stages=("input",))
        def gen(messages: Any) -> Iterator[str]:
            yield "FORBIDDEN"

        @guard.protect(stages=("input",))
        async def agen(messages: Any) -> AsyncIterator[str]:
            yield "FORBIDDEN"

        assert list(gen(USER)) == ["FORBIDDEN"]
        assert [c async for c in agen(USER)] == ["FORBIDDEN"]


class TestGeneratorViolations:
    def test_sync_generator_block_calls_hook_then_raises(self, guard_factory) -> None:
        """A blocked generator notifies on_violation, then raises ViolationError."""
        seen: list[str] = []
        guard = guard_factory(output={"hold_back_chars": 3})

        @guard.protect(on_violation=lambda d: seen.append(d.outcome))
        def gen(messages: Any) -> Iterator[str]:
            yield from ["ok ", "FORBIDDEN"]

        with pytest.raises(ViolationError):
            list(gen(USER))
        assert seen == ["block"]

    async def test_async_generator_block_and_input_refuse(self, guard_factory) -> None:
        """Async generators: a blocked stream notifies and raises; a refused input yields the refusal only."""
        seen: list[str] = []
        guard = guard_factory(input={"action": "refuse"}, output={"hold_back_chars": 3})

        @guard.protect(on_violation=seen.append)
        async def agen(messages: Any) -> AsyncIterator[str]:
            for chunk in ["ok ", "FORBIDDEN"]:
                yield chunk

        with pytest.raises(ViolationError):
            [c async for c in agen(USER)]
        assert [c async for c in agen(BAD)] == ["I can't help with that request."]
        assert len(seen) == 2


class TestArgumentsAndShapes:
    def test_regenerate_keeps_keyword_messages(self, guard_factory) -> None:
        """When messages were passed by keyword, the regenerated call gets the new ones by keyword."""
        guard = guard_factory(output={"action": "regenerate"})
        seen: list[Any] = []

        @guard.protect
        def chat(*, messages: Any) -> str:
            seen.append(messages)
            return "FORBIDDEN" if len(seen) == 1 else "fine"

        assert chat(messages=USER) == "fine"
        assert seen[1][-1]["role"] == "system"

    def test_unresolvable_annotation_falls_back_to_text(self, guard_factory) -> None:
        """A return annotation that cannot be resolved gives a plain-text refusal."""
        guard = guard_factory(input={"action": "refuse"})

        def chat(messages: Any) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
            return "x"

        assert guard.protect(chat)(BAD) == "I can't help with that request."

    def test_shape_helpers(self) -> None:
        """Empty choices have no text; unknown outputs cannot carry a refusal; non-iterator annotations."""
        assert text_of({"choices": []}) == ""
        with pytest.raises(InputError, match="int"):
            with_text(3, "no")
        assert yield_annotation(int) is None


class TestScorers:
    def test_threshold_must_be_a_probability(self) -> None:
        """A verdict with a NaN threshold is a scorer error."""
        core = DecisionCore(Policy(name="t"))
        verdict = Verdict("input", (), 0.1, 1.0, math.nan, "m", 1.0)
        with pytest.raises(Exception, match="threshold"):
            core.validate(core.prepare("input", USER), verdict)

    async def test_async_only_scorer_in_sync_code(self, guard_factory) -> None:
        """A scorer with only ascore/aclose works from sync checks too."""

        class AsyncOnly:
            async def ascore(self, request: Any) -> Any:
                return StaticScorer(0.9).score(request)

            async def aclose(self) -> None:
                return None

        guard = guard_factory(scorer=AsyncOnly())
        assert guard.check_input(USER).outcome == "block"

    async def test_scorer_raising_check_error_keeps_its_type(self, driver, guard_factory) -> None:
        """A CheckError raised by the scorer itself is kept as it is (not wrapped)."""

        def timeout(clause: Any, transcript: str) -> float:
            raise ScorerTimeout("model server said timeout")

        guard = guard_factory(scorer=FakeScorer(timeout))
        decision = await driver.check_input(guard, USER)
        assert decision.error == "ScorerTimeout: model server said timeout"

    async def test_lazy_load_in_async_code_and_aclose(self, monkeypatch) -> None:
        """Without a scorer, async checks load the bundle off the loop; aclose closes the loaded scorer."""
        loaded = StaticScorer(0.0)
        monkeypatch.setattr(
            model_pkg, "OnnxScorer", type("O", (), {"load": staticmethod(lambda path: loaded)})
        )
        guard = Guard(Policy(name="lazy"))
        assert (await guard.acheck_input(USER)).allowed
        await guard.aclose()
        assert loaded.closed


class TestHelpers:
    def test_assert_decision_explains_failures(self, guard_factory) -> None:
        """assert_decision names each failed expectation."""
        decision = guard_factory().check_input(USER)
        with pytest.raises(AssertionError, match=r"outcome 'allow' != 'block'.*violations") as info:
            assert_decision(decision, outcome="block", violations=["violence"], max_probability=0.001)
        assert "> 0.001" in str(info.value)

    async def test_feeder_drops_chunks_after_the_end(self, guard_factory) -> None:
        """A StreamFeeder that has ended ignores further chunks."""
        guard = guard_factory(output={"action": "refuse", "hold_back_chars": 1})
        feeder: StreamFeeder[str] = StreamFeeder(guard, USER, request_id="r")
        assert await feeder.afeed("FORBIDDEN") == ["I can't help with that request."]
        assert feeder.ended
        assert await feeder.afeed("more") == []
        assert await feeder.afinish() == []
