"""GuardMiddleware in front of an OpenAI-compatible Starlette chat endpoint, streaming included.

Serve it with ``uvicorn examples.asgi_app:app``; run it as a script to send three requests in-process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from csrm_guard import Guard, Policy, StageSettings
from csrm_guard.middleware.asgi import GuardMiddleware
from csrm_guard.testing import FakeScorer


def reply_for(question: str) -> str:
    """The app's 'LLM': echoes, and misbehaves when asked to be rude."""
    return (
        "you absolute idiot, here is your answer" if "rude" in question else f"Happy to help with: {question}"
    )


def openai_body(text: str, *, chunk: bool = False) -> dict:
    """An OpenAI-style completion (or streaming chunk) carrying ``text``."""
    choice = {"index": 0, "delta" if chunk else "message": {"role": "assistant", "content": text}}
    kind = "chat.completion.chunk" if chunk else "chat.completion"
    return {
        "id": "c1",
        "object": kind,
        "created": 0,
        "model": "demo",
        "choices": [{**choice, "finish_reason": None}],
    }


async def chat(request: Request) -> Any:
    """An OpenAI-compatible chat endpoint (JSON, or server-sent events when ``stream`` is set)."""
    body = await request.json()
    text = reply_for(body["messages"][-1]["content"])
    if not body.get("stream"):
        return JSONResponse(openai_body(text))

    async def events() -> AsyncIterator[str]:
        for word in text.split(" "):
            yield f"data: {json.dumps(openai_body(word + ' ', chunk=True))}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def fake_model(clause, transcript: str) -> float:
    """A stand-in for the model: harassment when the judged turn insults the user."""
    return (
        0.9
        if clause.id == "harassment" and "idiot" in transcript.rsplit("[judged]", maxsplit=1)[-1]
        else 0.02
    )


scorer = FakeScorer(fake_model)
guard = Guard(
    Policy(
        name="asgi-demo",
        categories={"harassment": {}},
        output=StageSettings(action="refuse", hold_back_chars=8),
    ),
    scorer=scorer,
)
app = GuardMiddleware(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]), guard)


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        for question, stream in [
            ("opening hours?", False),
            ("be rude please", False),
            ("be rude please", True),
        ]:
            payload = {"model": "demo", "stream": stream, "messages": [{"role": "user", "content": question}]}
            response = await client.post("/v1/chat/completions", json=payload)
            print(
                response.status_code, "stream" if stream else "json", "->", answer_text(response.text, stream)
            )


def answer_text(raw: str, stream: bool) -> str:
    """The assistant text of a JSON or event-stream response."""
    if not stream:
        return json.loads(raw)["choices"][0]["message"]["content"]
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e.startswith("data: {")]
    return "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events)


if __name__ == "__main__":
    asyncio.run(main())
