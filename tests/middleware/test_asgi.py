"""Tests of GuardMiddleware in-process: a Starlette chat endpoint, JSON and SSE responses, pass-through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from csrm_guard.middleware.asgi import GuardMiddleware
from csrm_guard.testing import capture_decisions

pytestmark = pytest.mark.anyio

REFUSAL = "I can't help with that request."


def chunk(text: str) -> str:
    payload = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
    return f"data: {json.dumps(payload)}\n\n"


class Upstream:
    """A Starlette chat app whose reply is set per test; counts how many stream events it produced."""

    def __init__(self, reply: str = "hello friend", words: list[str] | None = None) -> None:
        self.reply, self.words = reply, words or []
        self.calls = 0
        self.streamed = 0
        routes = [Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/health", self.health)]
        self.app = Starlette(routes=routes)

    async def health(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def chat(self, request: Request) -> Any:
        body = await request.json()
        self.calls += 1
        if body.get("stream"):
            return StreamingResponse(self.events(), media_type="text/event-stream")
        if self.reply == "ERROR":
            return JSONResponse({"error": "upstream broke"}, status_code=500)
        message = {"role": "assistant", "content": self.reply}
        return JSONResponse({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip

    async def events(self) -> AsyncIterator[str]:
        for word in self.words:
            self.streamed += 1
            yield chunk(word)
            await asyncio.sleep(0)
        yield "data: [DONE]\n\n"


def client(upstream: Upstream, guard: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=GuardMiddleware(upstream.app, guard))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def body(content: str, *, stream: bool = False) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], "stream": stream}


def sse_texts(raw: str) -> list[str]:
    texts = []
    for event in raw.split("\n\n"):
        data = event.removeprefix("data: ").strip()
        if data and data != "[DONE]":
            payload = json.loads(data)
            texts.append(payload["choices"][0]["delta"]["content"] if "choices" in payload else "ERROR")
    return texts


class TestJson:
    async def test_clean_request_passes_through(self, make_guard) -> None:
        """A clean exchange reaches the app and comes back unchanged, with the request id header."""
        upstream = Upstream("hello friend")
        async with client(upstream, make_guard()) as http:
            response = await http.post(
                "/v1/chat/completions", json=body("hi"), headers={"x-request-id": "r1"}
            )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hello friend"
        assert response.headers["x-csrm-guard-request-id"] == "r1"

    async def test_blocked_input_is_400_and_app_not_called(self, make_guard) -> None:
        """A blocked request gets an OpenAI-style 400 error naming the violation; the app is never called."""
        upstream = Upstream()
        async with client(upstream, make_guard()) as http:
            response = await http.post("/v1/chat/completions", json=body("FORBIDDEN"))
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "content_policy_violation"
        assert "violence" in error["csrm_guard"]["violations"]
        assert upstream.calls == 0

    async def test_refused_output_is_rewritten(self, make_guard) -> None:
        """A refused response body is replaced by the refusal with a correct content-length."""
        async with client(Upstream("FORBIDDEN reply"), make_guard(output={"action": "refuse"})) as http:
            response = await http.post("/v1/chat/completions", json=body("hi"))
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == REFUSAL
        assert int(response.headers["content-length"]) == len(response.content)

    async def test_refused_input_streaming_request(self, make_guard) -> None:
        """A refused streaming request gets a one-chunk event stream with the refusal."""
        async with client(Upstream(), make_guard(input={"action": "refuse"})) as http:
            response = await http.post("/v1/chat/completions", json=body("FORBIDDEN", stream=True))
        assert response.headers["content-type"].startswith("text/event-stream")
        assert sse_texts(response.text) == [REFUSAL]
        assert response.text.endswith("data: [DONE]\n\n")

    async def test_pass_through_routes_errors_and_bad_bodies(self, make_guard) -> None:
        """Other routes and upstream errors pass untouched; a non-chat body is a 400."""
        guard = make_guard()
        async with client(Upstream("ERROR"), guard) as http:
            assert (await http.get("/health")).text == "ok"
            assert (await http.post("/v1/chat/completions", json=body("hi"))).status_code == 500
            bad = await http.post("/v1/chat/completions", content=b"not json")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_request"


class TestStreaming:
    async def test_clean_stream_is_complete(self, make_guard) -> None:
        """A clean event stream arrives whole, in order, ending with [DONE]."""
        words = [f"w{i} " for i in range(30)]
        async with client(Upstream(words=words), make_guard(output={"hold_back_chars": 10})) as http:
            response = await http.post("/v1/chat/completions", json=body("hi", stream=True))
        assert sse_texts(response.text) == words
        assert response.text.endswith("data: [DONE]\n\n")

    @pytest.mark.parametrize("window", [1, 8, 64])
    async def test_violating_window_is_never_sent(self, make_guard, window) -> None:
        """The violating window never reaches the client; the stream ends with the refusal and the app
        stops."""
        words = ["Once ", "upon ", "a ", "FORBIDDEN ", "time "] + [f"more{i} " for i in range(200)]
        upstream = Upstream(words=words)
        guard = make_guard(output={"action": "refuse", "hold_back_chars": window})
        with capture_decisions() as decisions:
            async with client(upstream, guard) as http:
                response = await http.post("/v1/chat/completions", json=body("hi", stream=True))
        texts = sse_texts(response.text)
        assert texts[-1] == REFUSAL
        assert "FORBIDDEN" not in "".join(texts[:-1])
        assert response.text.endswith("data: [DONE]\n\n")
        assert upstream.streamed < len(words)  # the app was stopped, not drained
        assert [d.outcome for d in decisions if d.stage == "output"] == ["refuse"]

    async def test_blocked_stream_ends_with_error_event(self, make_guard) -> None:
        """Under block, the stream ends with an error event instead of a refusal chunk."""
        words = ["safe ", "FORBIDDEN ", "rest "]
        async with client(Upstream(words=words), make_guard(output={"hold_back_chars": 4})) as http:
            response = await http.post("/v1/chat/completions", json=body("hi", stream=True))
        assert "content_policy_violation" in response.text
        assert "FORBIDDEN" not in response.text
        assert response.text.endswith("data: [DONE]\n\n")


class TestEdges:
    async def test_malformed_messages_are_400(self, make_guard) -> None:
        """A body whose messages are malformed gets a 400 naming the problem."""
        payload = {"model": "m", "messages": [{"role": "robot", "content": "x"}]}
        async with client(Upstream(), make_guard()) as http:
            response = await http.post("/v1/chat/completions", json=payload)
        assert response.status_code == 400
        assert "messages[0].role" in response.json()["error"]["message"]

    async def test_non_completion_upstream_is_502(self, make_guard) -> None:
        """A 200 answer that is not a chat completion fails closed with a 502."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"plain text", "more_body": False})

        transport = httpx.ASGITransport(app=GuardMiddleware(app, make_guard()))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post("/v1/chat/completions", json=body("hi"))
        assert response.status_code == 502

    async def test_input_only_and_output_only(self, make_guard) -> None:
        """stages limits the checks in the middleware too."""
        guard = make_guard(output={"action": "refuse"})
        upstream = Upstream("FORBIDDEN reply")
        only_input = GuardMiddleware(upstream.app, guard, stages=("input",))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=only_input), base_url="http://t"
        ) as http:
            response = await http.post("/v1/chat/completions", json=body("hi"))
        assert response.json()["choices"][0]["message"]["content"] == "FORBIDDEN reply"
        only_output = GuardMiddleware(upstream.app, guard, stages=("output",))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=only_output), base_url="http://t"
        ) as http:
            response = await http.post("/v1/chat/completions", json=body("FORBIDDEN"))
        assert response.json()["choices"][0]["message"]["content"] == REFUSAL

    async def test_blocked_json_output_is_400(self, make_guard) -> None:
        """A blocked JSON answer is replaced by a 400 error."""
        async with client(Upstream("FORBIDDEN reply"), make_guard()) as http:
            response = await http.post("/v1/chat/completions", json=body("hi"))
        assert response.status_code == 400
        assert response.json()["error"]["csrm_guard"]["stage"] == "output"
