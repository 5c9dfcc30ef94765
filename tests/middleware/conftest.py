"""Fixtures for the middleware tests: a guard over a fake scorer and an OpenAI-compatible fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from csrm_guard import Policy
from csrm_guard.guard import Guard
from csrm_guard.testing import FakeScorer


def flag_marker(clause: Any, transcript: str) -> float:
    """0.95 when the judged turn contains FORBIDDEN, else 0.02."""
    return 0.95 if "FORBIDDEN" in transcript.rsplit("[judged]", 1)[-1] else 0.02


@pytest.fixture(name="anyio_backend")
def _anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="make_guard")
def _make_guard() -> Iterator[Any]:
    guards: list[Guard] = []

    def make(**stages: Any) -> Guard:
        policy = Policy(name="mw", categories={"violence": {"max_severity": "low"}}, **stages)
        guard = Guard(policy, scorer=FakeScorer(flag_marker), regenerate_backoff=0.0)
        guards.append(guard)
        return guard

    yield make
    for guard in guards:
        guard.close()


def completion(text: str) -> dict[str, Any]:
    """An OpenAI chat completion body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def sse(words: list[str]) -> bytes:
    """An OpenAI streaming body: one chunk per word, then [DONE]."""
    events = []
    for word in words:
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "fake-model",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


class FakeServer:
    """An OpenAI-compatible chat endpoint for httpx.MockTransport, answering from a script of replies."""

    def __init__(self, *replies: str, words: list[str] | None = None) -> None:
        self.replies = list(replies)
        self.words = words
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if body.get("stream"):
            return httpx.Response(
                200, content=sse(self.words or []), headers={"content-type": "text/event-stream"}
            )
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return httpx.Response(200, json=completion(reply))


@pytest.fixture(name="server_factory")
def _server_factory() -> Any:
    return FakeServer
