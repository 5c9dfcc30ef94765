"""Tests of streaming: the pure hold-back window, release only after checks, and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from csrm_guard import ViolationError
from csrm_guard.guard.stream import HoldBack
from csrm_guard.testing import FakeScorer, capture_decisions

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "tell me a story"}]
SKULL = "\u2620"  # the violating content: one character, so it fits in a chunk of any size
REFUSAL = "I can't help with that request."
CHUNK_SIZES = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1024]
FILLER = "The quick brown fox jumps over the lazy dog. " * 200


def skull_scorer() -> FakeScorer:
    """Flags a judged turn that contains SKULL."""
    return FakeScorer(
        lambda clause, transcript: 0.97 if SKULL in transcript.rsplit("[judged]", 1)[-1] else 0.01
    )


def third_chunk_violates(size: int, count: int = 12) -> list[str]:
    """`count` chunks of `size` characters; the third one starts with SKULL."""
    chunks = [FILLER[i * size : (i + 1) * size] for i in range(count)]
    chunks[2] = SKULL + chunks[2][1:]
    return chunks


class TestHoldBack:
    def test_feed_asks_for_a_check_at_the_window_size(self) -> None:
        """feed returns True once the held text reaches the window size, and approve releases it all."""
        window: HoldBack[str] = HoldBack(5)
        assert window.feed("ab", "ab") is False
        assert window.feed("cde", "cde") is True
        assert window.approve() == ["ab", "cde"]
        assert (window.held, window.text) == (0, "abcde")

    def test_window_ramps_up_to_its_size(self) -> None:
        """The first check comes after a short window; each passed check doubles it, up to the size."""
        window: HoldBack[str] = HoldBack(200)
        dues = []
        for _ in range(5):
            dues.append(window.due)
            window.approve()
        assert dues == [25, 50, 100, 200, 200]
        assert HoldBack(200, ramp=False).due == 200
        assert HoldBack(10).due == 10

    def test_withhold_drops_items_and_finish_reports_leftovers(self) -> None:
        """withhold drops held items; finish asks for a final check when text is held or nothing was
        checked."""
        window: HoldBack[str] = HoldBack(10)
        assert window.finish() is True  # nothing checked yet: an empty stream still gets a decision
        window.feed("x", "x")
        assert window.withhold() == ["x"]
        assert window.finish() is False

    def test_window_must_be_positive(self) -> None:
        """A zero window is rejected."""
        with pytest.raises(ValueError, match="at least 1"):
            HoldBack(0)


class TestRelease:
    @pytest.mark.parametrize("window", [16, 200])
    @pytest.mark.parametrize("size", CHUNK_SIZES)
    async def test_violating_window_never_released(self, driver, guard_factory, size, window) -> None:
        """Whatever the chunk size, no character of the violating window reaches the caller."""
        guard = guard_factory(scorer=skull_scorer(), output={"action": "refuse", "hold_back_chars": window})
        chunks = third_chunk_violates(size)
        result = await driver.stream(guard, USER, chunks)
        assert result.error is None
        assert result.released[-1] == REFUSAL
        released = "".join(result.released[:-1])
        assert SKULL not in released
        assert "".join(chunks).startswith(released)
        assert len(released) <= 2 * size  # everything released lies before the third chunk
        assert result.decision is not None
        assert result.decision.outcome == "refuse"

    @pytest.mark.parametrize("size", [1, 7, 1024])
    async def test_block_raises_after_released_text(self, driver, guard_factory, size) -> None:
        """With block, the stream raises ViolationError and the violating window is withheld."""
        guard = guard_factory(scorer=skull_scorer(), output={"hold_back_chars": 16})
        result = await driver.stream(guard, USER, third_chunk_violates(size))
        assert isinstance(result.error, ViolationError)
        assert SKULL not in "".join(result.released)

    async def test_clean_stream_is_released_whole(self, driver, guard_factory) -> None:
        """A clean stream is released in full, in order, with one allow decision recorded."""
        guard = guard_factory(scorer=skull_scorer(), output={"hold_back_chars": 50})
        chunks = [FILLER[i : i + 7] for i in range(0, 700, 7)]
        with capture_decisions() as decisions:
            result = await driver.stream(guard, USER, chunks)
        assert "".join(result.released) == "".join(chunks)
        assert [d.outcome for d in decisions] == ["allow"]
        assert result.decision is decisions[0]

    async def test_monitor_releases_everything(self, driver, guard_factory) -> None:
        """monitor never withholds text, but its decision records the violation."""
        guard = guard_factory(scorer=skull_scorer(), output={"action": "monitor", "hold_back_chars": 8})
        chunks = third_chunk_violates(5)
        result = await driver.stream(guard, USER, chunks)
        assert "".join(result.released) == "".join(chunks)
        assert result.decision is not None
        assert result.decision.outcome == "monitor"

    async def test_empty_stream_gets_a_decision(self, driver, guard_factory) -> None:
        """An empty stream is still checked once and decided."""
        result = await driver.stream(guard_factory(), USER, [])
        assert result.released == []
        assert result.decision is not None
        assert result.decision.allowed

    async def test_fail_closed_on_scorer_error_withholds(self, driver, guard_factory) -> None:
        """A failing scorer mid-stream fails closed: the window is withheld and the refusal sent."""

        def broken(clause: Any, transcript: str) -> float:
            raise RuntimeError("down")

        guard = guard_factory(scorer=FakeScorer(broken), output={"action": "refuse", "hold_back_chars": 4})
        result = await driver.stream(guard, USER, ["abcdef", "ghij"])
        assert result.released == [REFUSAL]
        assert result.decision is not None
        assert result.decision.error is not None


class TestClosing:
    def test_closing_sync_stream_closes_upstream(self, guard_factory) -> None:
        """Leaving a guarded stream early closes the upstream generator."""
        closed = threading.Event()

        def upstream() -> Iterator[str]:
            try:
                while True:
                    yield "word "
            finally:
                closed.set()

        guard = guard_factory(output={"hold_back_chars": 10})
        with guard.check_stream(USER, upstream()) as stream:
            assert next(stream) == "word "
        assert closed.is_set()

    async def test_cancel_mid_stream_leaves_no_task(self, guard_factory) -> None:
        """Cancelling the consumer while a window is being scored closes upstream and leaves no task."""
        entered, release = asyncio.Event(), asyncio.Event()
        closed: list[bool] = []

        async def slow(clause: Any, transcript: str) -> float:
            entered.set()
            await release.wait()
            return 0.0

        async def upstream() -> AsyncIterator[str]:
            try:
                while True:
                    yield "token "
            finally:
                closed.append(True)

        guard = guard_factory(scorer=FakeScorer(slow), output={"hold_back_chars": 12})
        baseline = set(asyncio.all_tasks())

        async def consume() -> None:
            async for _ in guard.acheck_stream(USER, upstream()):
                pass

        with capture_decisions() as decisions:
            task = asyncio.create_task(consume())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert closed == [True]
        assert decisions == []
        assert set(asyncio.all_tasks()) == baseline
