"""Fixtures for the guard tests: policies, fake scorers and a sync/async driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from csrm_guard import Policy
from csrm_guard.guard import Decision, Guard
from csrm_guard.testing import FakeScorer

MARKER = "FORBIDDEN"
MESSAGES = [{"role": "user", "content": "hello there"}]


def marker_fn(clause: Any, transcript: str) -> float:
    """Probability 0.95 when the judged turn contains MARKER, else 0.02."""
    judged = transcript.rsplit("[judged]", 1)[-1]
    return 0.95 if MARKER in judged else 0.02


@pytest.fixture(name="anyio_backend")
def _anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="policy_factory")
def _policy_factory() -> Callable[..., Policy]:
    def make(**stages: dict[str, Any]) -> Policy:
        fields: dict[str, Any] = {"name": "test-policy", "categories": {"violence": {"max_severity": "low"}}}
        fields.update(stages)
        return Policy(**fields)

    return make


@pytest.fixture(name="fake_scorer")
def _fake_scorer() -> FakeScorer:
    return FakeScorer(marker_fn)


@pytest.fixture(name="guard_factory")
def _guard_factory(
    policy_factory: Callable[..., Policy], fake_scorer: FakeScorer
) -> Iterable[Callable[..., Guard]]:
    guards: list[Guard] = []

    def make(scorer: Any = None, audit: Any = None, **stages: dict[str, Any]) -> Guard:
        guard = Guard(
            policy_factory(**stages), scorer=scorer or fake_scorer, audit=audit, regenerate_backoff=0.0
        )
        guards.append(guard)
        return guard

    yield make
    for guard in guards:
        guard.close()


@dataclass
class StreamResult:
    """What a guarded stream delivered."""

    released: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    decision: Decision | None = None


class Driver:
    """Runs the same test body through the sync or the async API of a Guard."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def check_input(self, guard: Guard, messages: Any, **kwargs: Any) -> Decision:
        if self.kind == "sync":
            return guard.check_input(messages, **kwargs)
        return await guard.acheck_input(messages, **kwargs)

    async def check_output(self, guard: Guard, messages: Any, response: Any, **kwargs: Any) -> Decision:
        if self.kind == "sync":
            return guard.check_output(messages, response, **kwargs)
        return await guard.acheck_output(messages, response, **kwargs)

    async def stream(self, guard: Guard, messages: Any, chunks: list[str]) -> StreamResult:
        result = StreamResult()
        try:
            if self.kind == "sync":
                stream = guard.check_stream(messages, iter(chunks))
                for text in stream:
                    result.released.append(text)
                result.decision = stream.decision
            else:
                astream = guard.acheck_stream(messages, _aiter(chunks))
                async for text in astream:
                    result.released.append(text)
                result.decision = astream.decision
        except Exception as exc:  # the test inspects it
            result.error = exc
        return result

    def function(self, impl: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a sync implementation as a sync function or a coroutine function."""
        if self.kind == "sync":

            def sync_fn(messages: Any, **kwargs: Any) -> Any:
                return impl(messages, **kwargs)

            return sync_fn

        async def async_fn(messages: Any, **kwargs: Any) -> Any:
            return impl(messages, **kwargs)

        return async_fn

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.kind == "sync":
            return fn(*args, **kwargs)
        return await fn(*args, **kwargs)


async def _aiter(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


@pytest.fixture(name="driver", params=["sync", "async"])
def _driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)
