"""Tests of GuardedOpenAI / GuardedAsyncOpenAI against an httpx.MockTransport fake server."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from csrm_guard import ViolationError
from csrm_guard.middleware.openai import GuardedAsyncOpenAI, GuardedOpenAI

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello"}]
BAD = [{"role": "user", "content": "FORBIDDEN please"}]
REFUSAL = "I can't help with that request."


def sync_client(server: Any, guard: Any) -> GuardedOpenAI:
    http = httpx.Client(transport=httpx.MockTransport(server))
    return GuardedOpenAI(openai.OpenAI(api_key="test", base_url="http://mock/v1", http_client=http), guard)


def async_client(server: Any, guard: Any) -> GuardedAsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return GuardedAsyncOpenAI(
        openai.AsyncOpenAI(api_key="test", base_url="http://mock/v1", http_client=http), guard
    )


class TestSync:
    def test_clean_completion_passes(self, make_guard, server_factory) -> None:
        """A clean exchange returns the server's ChatCompletion unchanged."""
        client = sync_client(server_factory("hi there"), make_guard())
        result = client.chat.completions.create(model="m", messages=USER)
        assert isinstance(result, ChatCompletion)
        assert result.choices[0].message.content == "hi there"

    def test_blocked_input_never_reaches_the_server(self, make_guard, server_factory) -> None:
        """A blocked request raises ViolationError and sends nothing upstream."""
        server = server_factory("x")
        with pytest.raises(ViolationError):
            sync_client(server, make_guard()).chat.completions.create(model="m", messages=BAD)
        assert server.requests == []

    def test_refused_output_is_a_completion(self, make_guard, server_factory) -> None:
        """A refused output comes back as a ChatCompletion with the refusal, finish_reason content_filter."""
        client = sync_client(server_factory("FORBIDDEN reply"), make_guard(output={"action": "refuse"}))
        result = client.chat.completions.create(model="m", messages=USER)
        assert result.choices[0].message.content == REFUSAL
        assert result.choices[0].finish_reason == "content_filter"

    def test_regenerate_resends_with_feedback(self, make_guard, server_factory) -> None:
        """regenerate calls the API again with a system note appended, and returns the compliant answer."""
        server = server_factory("FORBIDDEN reply", "clean reply")
        client = sync_client(server, make_guard(output={"action": "regenerate"}))
        result = client.chat.completions.create(model="m", messages=USER)
        assert result.choices[0].message.content == "clean reply"
        assert server.requests[1]["messages"][-1]["role"] == "system"

    def test_stream_is_cut_before_the_violation(self, make_guard, server_factory) -> None:
        """With stream=True, chunks flow until the violating window, which ends in a refusal chunk."""
        server = server_factory(words=["Once ", "upon ", "a ", "time ", "FORBIDDEN ", "things ", "happened"])
        guard = make_guard(output={"action": "refuse", "hold_back_chars": 6})
        stream = sync_client(server, guard).chat.completions.create(model="m", messages=USER, stream=True)
        with stream:
            chunks = list(stream)
        assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
        texts = [chunk.choices[0].delta.content for chunk in chunks]
        assert texts[-1] == REFUSAL
        assert "FORBIDDEN" not in "".join(texts[:-1])
        assert "".join(texts[:-1]).startswith("Once upon")

    def test_refused_stream_input_yields_one_chunk(self, make_guard, server_factory) -> None:
        """A refused streaming request yields a single refusal chunk without calling the server."""
        server = server_factory()
        client = sync_client(server, make_guard(input={"action": "refuse"}))
        with client.chat.completions.create(model="m", messages=BAD, stream=True) as stream:
            texts = [chunk.choices[0].delta.content for chunk in stream]
        assert texts == [REFUSAL]
        assert server.requests == []

    def test_other_attributes_are_forwarded(self, make_guard, server_factory) -> None:
        """Attributes other than chat.completions.create come from the wrapped client."""
        client = sync_client(server_factory("x"), make_guard())
        assert client.base_url == client.client.base_url
        assert client.chat.completions.with_raw_response is not None


class TestAsync:
    async def test_async_refuse_and_allow(self, make_guard, server_factory) -> None:
        """The async wrapper allows clean completions and refuses violating ones."""
        guard = make_guard(output={"action": "refuse"})
        ok = await async_client(server_factory("fine"), guard).chat.completions.create(
            model="m", messages=USER
        )
        assert ok.choices[0].message.content == "fine"
        bad = await async_client(server_factory("FORBIDDEN"), guard).chat.completions.create(
            model="m", messages=USER
        )
        assert bad.choices[0].message.content == REFUSAL

    async def test_async_stream_block(self, make_guard, server_factory) -> None:
        """An async stream under block raises ViolationError after releasing only checked text."""
        server = server_factory(words=["safe ", "words ", "then ", "FORBIDDEN ", "end"])
        guard = make_guard(output={"hold_back_chars": 5})
        stream = await async_client(server, guard).chat.completions.create(
            model="m", messages=USER, stream=True
        )
        received: list[str] = []

        async def consume() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(ViolationError):
            await consume()
        assert "FORBIDDEN" not in "".join(received)
        assert received


class TestOptions:
    def test_output_only_and_input_only(self, make_guard, server_factory) -> None:
        """stages limits the checks: output-only lets a bad request through, input-only a bad answer."""
        guard = make_guard(output={"action": "refuse"})
        server = server_factory("FORBIDDEN")
        http = httpx.Client(transport=httpx.MockTransport(server))
        raw = openai.OpenAI(api_key="t", base_url="http://mock/v1", http_client=http)
        output_only = GuardedOpenAI(raw, guard, stages=("output",))
        assert (
            output_only.chat.completions.create(model="m", messages=BAD).choices[0].message.content == REFUSAL
        )
        input_only = GuardedOpenAI(raw, guard, stages=("input",))
        assert (
            input_only.chat.completions.create(model="m", messages=USER).choices[0].message.content
            == "FORBIDDEN"
        )

    async def test_async_refused_stream_and_output_only(self, make_guard, server_factory) -> None:
        """Async: a refused streaming request yields one chunk; input-only passes the answer untouched."""
        guard = make_guard(input={"action": "refuse"})
        client = async_client(server_factory("FORBIDDEN"), guard)
        stream = await client.chat.completions.create(model="m", messages=BAD, stream=True)
        async with stream:
            texts = [chunk.choices[0].delta.content async for chunk in stream]
        assert texts == [REFUSAL]
        raw = client.client
        input_only = GuardedAsyncOpenAI(raw, guard, stages=("input",))
        answer = await input_only.chat.completions.create(model="m", messages=USER)
        assert answer.choices[0].message.content == "FORBIDDEN"

    async def test_async_regenerate(self, make_guard, server_factory) -> None:
        """Async regenerate re-sends with feedback and returns the compliant answer."""
        server = server_factory("FORBIDDEN", "clean")
        client = async_client(server, make_guard(output={"action": "regenerate"}))
        answer = await client.chat.completions.create(model="m", messages=USER)
        assert answer.choices[0].message.content == "clean"
        assert len(server.requests) == 2
