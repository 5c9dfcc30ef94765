"""Streaming: a pure hold-back window and the sync and async drivers that check it.

:class:`HoldBack` only keeps books: ``feed(item, text)`` says whether the text held back has reached the
window size and must be scored; ``approve()`` hands back the held items once a check has passed. The drivers
(:class:`GuardedStream`, :class:`AsyncGuardedStream`) score the whole response so far (the judged turn is the
last turn of the transcript, so the newest window is what the model reads first when the transcript is
truncated), and release held items only after that check allowed them. When a window violates, none of its
items are released: the stream ends with the policy's refusal (``refuse``, and ``regenerate``/``best_of_n``,
which cannot recall text already released) or raises :class:`~csrm_guard.errors.ViolationError` (``block``).

Each stream records one decision: the one that ended it (the violating window, or the final check of the whole
response). Intermediate allowed windows are logged at DEBUG only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from csrm_guard._types import Messages
from csrm_guard.errors import ViolationError
from csrm_guard.guard._core import Decision

if TYPE_CHECKING:
    from csrm_guard.guard.guard import Guard

__all__ = ["AsyncGuardedStream", "GuardedStream", "HoldBack", "StreamFeeder"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class HoldBack(Generic[T]):
    """The hold-back window: items wait here until a check covering their text has passed.

    The window ramps up: the first check is due after ``max(min(size, 16), size // 8)`` characters and each
    passed check doubles the next window, up to ``size``. The first token thus waits for a short window, not a
    full one, and long streams still cost about one check per ``size`` characters. Either way, no text is
    released before a check covering it has passed.

    Args:
        size: Characters held back before a check is due (the stage's ``hold_back_chars``).
        ramp: Start with a short window and double it (default); ``False`` checks every ``size`` characters.
    """

    def __init__(self, size: int, *, ramp: bool = True) -> None:
        if size < 1:
            raise ValueError(f"hold-back window must be at least 1 character, got {size}")
        self.size = size
        self.due = max(min(size, 16), size // 8) if ramp else size
        self.checks = 0
        self._pending: list[T] = []
        self._pending_chars = 0
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """All text received so far, released or held."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def held(self) -> int:
        """Characters held back, waiting for a check."""
        return self._pending_chars

    def feed(self, item: T, text: str) -> bool:
        """Hold ``item`` (whose text is ``text``); return True when the held text must now be scored."""
        self._pending.append(item)
        self._pending_chars += len(text)
        self._parts.append(text)
        return self._pending_chars >= self.due

    def finish(self) -> bool:
        """At the end of the stream: True when a last check is due (text held, or nothing checked yet)."""
        return bool(self._pending) or self.checks == 0

    def approve(self) -> list[T]:
        """Release everything held: a check covering it has passed."""
        released, self._pending, self._pending_chars = self._pending, [], 0
        self.checks += 1
        self.due = min(self.size, self.due * 2)
        return released

    def withhold(self) -> list[T]:
        """Drop everything held: a check covering it has failed."""
        dropped, self._pending, self._pending_chars = self._pending, [], 0
        self.checks += 1
        return dropped


def _identity(text: Any) -> Any:
    return text


class _StreamBase(Generic[T]):
    """State shared by the sync and async drivers."""

    def __init__(
        self,
        guard: Guard,
        messages: Messages,
        *,
        request_id: str,
        text_of: Callable[[T], str] | None = None,
        refusal_of: Callable[[str], T] | None = None,
        include_text: bool | None = None,
    ) -> None:
        self.guard = guard
        self.messages = messages
        self.request_id = request_id
        self.decision: Decision | None = None
        """The decision that ended the stream; ``None`` until it has ended."""
        self._text_of: Callable[[T], str] = text_of or _identity
        self._refusal_of: Callable[[str], T] = refusal_of or _identity
        self._include_text = include_text
        self._window: HoldBack[T] = HoldBack(guard.core.settings("output").hold_back_chars)
        self._last: Decision | None = None
        self._flagged: Decision | None = None  # the first monitor decision, kept for the record

    def _verdict(self, decision: Decision) -> list[T]:
        """Settle a window: return what to release, or finish the stream on a violation."""
        self._last = decision
        if decision.outcome == "monitor" and self._flagged is None:
            self._flagged = decision
        if decision.allowed:
            logger.debug("stream window allowed: %d chars, request=%s", self._window.held, self.request_id)
            return self._window.approve()
        dropped = self._window.withhold()
        logger.info("stream cut: %d items withheld, request=%s", len(dropped), self.request_id)
        self._end(decision)
        if decision.outcome == "block":
            raise ViolationError(decision)
        violations = decision.violations
        return [self._refusal_of(decision.refusal or self.guard.core.refusal("output", violations))]

    def _settle(self) -> None:
        """At the end of a clean stream: record the last check (or an earlier monitor decision)."""
        last = self._last
        if self.decision is None and last is not None:
            self._end(last if last.violated or self._flagged is None else self._flagged)

    def _end(self, decision: Decision) -> None:
        self.decision = decision
        self.guard._emit(decision, self.messages, self._window.text, self._include_text)


class GuardedStream(_StreamBase[T]):
    """A guarded sync stream: iterate it to receive released items; ``decision`` is set when it ends.

    Closing it (or leaving a ``with`` block) closes the upstream iterator too.
    """

    def __init__(
        self,
        guard: Guard,
        messages: Messages,
        chunks: Iterable[T],
        *,
        request_id: str,
        text_of: Callable[[T], str] | None = None,
        refusal_of: Callable[[str], T] | None = None,
        include_text: bool | None = None,
    ) -> None:
        super().__init__(
            guard,
            messages,
            request_id=request_id,
            text_of=text_of,
            refusal_of=refusal_of,
            include_text=include_text,
        )
        self._upstream = iter(chunks)
        self._run = self._drive()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._run)

    def close(self) -> None:
        """Stop the stream and close the upstream iterator."""
        self._run.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> Decision:
        return self.guard._decide("output", self.messages, self._window.text, self.request_id)

    def _drive(self) -> Generator[T, None, None]:
        try:
            for item in self._upstream:
                if self._window.feed(item, self._text_of(item)):
                    decision = self._check()
                    yield from self._verdict(decision)
                    if self.decision is not None:
                        return
            if self._window.finish():
                yield from self._verdict(self._check())
            self._settle()
        finally:
            close = getattr(self._upstream, "close", None)
            if callable(close):
                close()


class AsyncGuardedStream(_StreamBase[T]):
    """A guarded async stream: ``async for`` over it; ``decision`` is set when it ends.

    Closing it (``await stream.aclose()``) or cancelling the consumer closes the upstream iterator too.
    """

    def __init__(
        self,
        guard: Guard,
        messages: Messages,
        chunks: AsyncIterable[T],
        *,
        request_id: str,
        text_of: Callable[[T], str] | None = None,
        refusal_of: Callable[[str], T] | None = None,
        include_text: bool | None = None,
    ) -> None:
        super().__init__(
            guard,
            messages,
            request_id=request_id,
            text_of=text_of,
            refusal_of=refusal_of,
            include_text=include_text,
        )
        self._upstream = aiter(chunks)
        self._run = self._drive()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await anext(self._run)

    async def aclose(self) -> None:
        """Stop the stream and close the upstream iterator."""
        await self._run.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _check(self) -> Decision:
        return await self.guard._adecide("output", self.messages, self._window.text, self.request_id)

    async def _drive(self) -> AsyncGenerator[T, None]:
        try:
            async for item in self._upstream:
                if self._window.feed(item, self._text_of(item)):
                    for released in self._verdict(await self._check()):
                        yield released
                    if self.decision is not None:
                        return
            if self._window.finish():
                for released in self._verdict(await self._check()):
                    yield released
            self._settle()
        finally:
            aclose = getattr(self._upstream, "aclose", None)
            if callable(aclose):
                with contextlib.suppress(RuntimeError):  # already running or closed elsewhere
                    await aclose()


class StreamFeeder(_StreamBase[T]):
    """A push-style async driver, for code that receives chunks in callbacks (an ASGI ``send``).

    Call :meth:`afeed` with each chunk and :meth:`afinish` at the end; each returns the items to release now.
    Once the stream has ended (``decision`` set), further chunks are dropped.

    Raises:
        ViolationError: From :meth:`afeed` or :meth:`afinish` when a window is blocked.
    """

    async def afeed(self, item: T) -> list[T]:
        """Hold ``item``; return what a check (if one was due) released."""
        if self.decision is not None:
            return []
        if self._window.feed(item, self._text_of(item)):
            return self._verdict(await self._acheck())
        return []

    async def afinish(self) -> list[T]:
        """Check what is still held at the end of the stream; return what may be released."""
        if self.decision is not None:
            return []
        released = self._verdict(await self._acheck()) if self._window.finish() else []
        self._settle()
        return released

    @property
    def ended(self) -> bool:
        """Whether the stream was cut (or finished); no more items will be released."""
        return self.decision is not None

    async def _acheck(self) -> Decision:
        return await self.guard._adecide("output", self.messages, self._window.text, self.request_id)
