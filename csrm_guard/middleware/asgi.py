"""``GuardMiddleware``: pure ASGI middleware guarding OpenAI-compatible ``/v1/chat/completions`` endpoints.

Works with any ASGI app (Starlette, FastAPI, ...). For a ``POST`` to a guarded path it reads the JSON body,
checks the last user turn, and either answers itself (``block``: HTTP 400 with an OpenAI-style error;
``refuse``: HTTP 200 with the refusal as a completion, or as a one-chunk event stream when the request asked
for ``stream``) or calls the app with the body replayed. The app's answer is checked on the way out by
wrapping ``send``:

- JSON responses are held (start message included) until the whole body is in, then checked.
- ``text/event-stream`` responses go through the hold-back window event by event: an event is sent only after
  the window holding it passed a check. A violating window is never sent; the stream ends with a refusal chunk
  (or an error event for ``block``) and ``data: [DONE]``, and the app is told the client left.

Non-HTTP scopes, other paths and methods, and non-200 responses pass straight through. No per-request state is
kept on the middleware object. ``regenerate`` and ``best_of_n`` cannot re-run an app's response here: they
refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from csrm_guard._types import Stage
from csrm_guard.errors import InputError, ViolationError
from csrm_guard.guard import Decision, Guard, _shapes
from csrm_guard.guard._core import new_request_id
from csrm_guard.guard.stream import StreamFeeder

__all__ = ["GuardMiddleware"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-csrm-guard-request-id"
_DONE = b"data: [DONE]\n\n"


class GuardMiddleware:
    """Guard OpenAI-compatible chat completion endpoints of an ASGI app.

    Args:
        app: The ASGI app to wrap.
        guard: The guard enforcing the policy.
        paths: The paths to guard.
        stages: Which checks to run.

    Example:
        >>> from starlette.applications import Starlette  # doctest: +SKIP
        >>> app = GuardMiddleware(Starlette(routes=routes), guard=guard)  # doctest: +SKIP

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: Guard,
        *,
        paths: Iterable[str] = ("/v1/chat/completions", "/chat/completions"),
        stages: Iterable[Stage] = ("input", "output"),
    ) -> None:
        self.app, self.guard = app, guard
        self.paths, self.stages = frozenset(paths), frozenset(stages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (the ASGI application interface)."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        rid = _header(scope, b"x-request-id") or new_request_id()
        try:
            payload = json.loads(body)
            messages = payload["messages"]
            stream = bool(payload.get("stream"))
        except (ValueError, KeyError, TypeError):
            await _send_json(
                send, 400, _error("request body is not a chat completion request", "invalid_request"), rid
            )
            return
        if "input" in self.stages:
            try:
                decision = await self.guard.acheck_input(messages, request_id=rid)
            except InputError as exc:
                await _send_json(send, 400, _error(str(exc), "invalid_request"), rid)
                return
            if not decision.allowed:
                await _answer_violation(send, decision, stream, self.guard, rid)
                return
        if "output" not in self.stages:
            await self.app(scope, _replay(body, receive, asyncio.Event()), send)
            return
        responder = _Responder(self.guard, messages, rid, send)
        try:
            await self.app(scope, _replay(body, receive, responder.cut), responder.send)
        except Exception:
            if not responder.cut.is_set():
                raise
            logger.debug("app stopped after its stream was cut (request %s)", rid, exc_info=True)


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive, cut: asyncio.Event) -> Receive:
    """Replay the request body once, then the real receive; after a cut, a disconnect so the app stops."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        if cut.is_set():
            return {"type": "http.disconnect"}
        real, stop = asyncio.ensure_future(receive()), asyncio.ensure_future(cut.wait())
        try:
            await asyncio.wait({real, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (real, stop):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return real.result() if real.done() and not real.cancelled() else {"type": "http.disconnect"}

    return replay


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _error(message: str, code: str, decision: Decision | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    if decision is not None:
        error["csrm_guard"] = {
            "stage": decision.stage,
            "outcome": decision.outcome,
            "violations": [violation.id for violation in decision.violations],
            "request_id": decision.request_id,
            "policy": decision.policy_name,
        }
    return {"error": error}


def _blocked(decision: Decision) -> dict[str, Any]:
    return _error(f"blocked by policy {decision.policy_name!r}", "content_policy_violation", decision)


async def _send_json(send: Send, status: int, payload: Any, rid: str) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER, rid.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _answer_violation(send: Send, decision: Decision, stream: bool, guard: Guard, rid: str) -> None:
    if decision.outcome == "block":
        await _send_json(send, 400, _blocked(decision), rid)
        return
    text = decision.refusal or guard.core.refusal(decision.stage, decision.violations)
    if not stream:
        await _send_json(send, 200, _shapes.completion_dict(text), rid)
        return
    headers = [(b"content-type", b"text/event-stream"), (REQUEST_ID_HEADER, rid.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    event = _event(_shapes.completion_dict(text, chunk=True))
    await send({"type": "http.response.body", "body": event + _DONE, "more_body": False})


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _event_data(event: bytes) -> Any:
    """The JSON payload of one SSE event, or ``None`` for comments and non-JSON data."""
    data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


class _Responder:
    """Per-request state: wraps ``send`` to check the app's response before it reaches the client."""

    def __init__(self, guard: Guard, messages: Any, rid: str, send: Send) -> None:
        self.guard, self.messages, self.rid, self._send = guard, messages, rid, send
        self.cut = asyncio.Event()
        self._start: Message | None = None
        self._mode = "undecided"  # then "json", "sse" or "pass"
        self._body: list[bytes] = []
        self._buffer = b""
        self._last_chunk: Any = None
        self._feeder: StreamFeeder[bytes] | None = None

    async def send(self, message: Message) -> None:
        if self.cut.is_set():
            raise OSError("csrm_guard ended this response")  # ASGI 2.4: the client is gone
        if message["type"] == "http.response.start":
            await self._on_start(message)
        elif message["type"] == "http.response.body" and self._mode == "json":
            await self._on_json_body(message)
        elif message["type"] == "http.response.body" and self._mode == "sse":
            await self._on_sse_body(message)
        else:
            await self._send(message)

    async def _on_start(self, message: Message) -> None:
        headers = list(message.get("headers", []))
        content_type = next((bytes(v).lower() for k, v in headers if k.lower() == b"content-type"), b"")
        self._start = {**message, "headers": [*headers, (REQUEST_ID_HEADER, self.rid.encode())]}
        if message.get("status") != 200:
            self._mode = "pass"
        elif content_type.startswith(b"text/event-stream"):
            self._mode = "sse"
            self._start["headers"] = [
                (k, v) for k, v in self._start["headers"] if k.lower() != b"content-length"
            ]
            self._feeder = StreamFeeder(
                self.guard,
                self.messages,
                request_id=self.rid,
                text_of=self._text_of,
                refusal_of=self._refusal,
            )
        else:
            self._mode = "json"
            return  # held until the body has been checked
        await self._send(self._start)

    async def _on_json_body(self, message: Message) -> None:
        self._body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self._body)
        try:
            payload = json.loads(body)
            text = _shapes.text_of(payload)
        except (ValueError, InputError):
            await _send_json(
                self._send, 502, _error("upstream answer is not a chat completion", "bad_upstream"), self.rid
            )
            return
        decision = await self.guard.acheck_output(self.messages, text, request_id=self.rid)
        if decision.allowed:
            assert self._start is not None
            await self._send(self._start)
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
        elif decision.outcome == "block":
            await _send_json(self._send, 400, _blocked(decision), self.rid)
        else:
            text = decision.refusal or self.guard.core.refusal("output", decision.violations)
            await _send_json(self._send, 200, _shapes.with_text(payload, text), self.rid)

    async def _on_sse_body(self, message: Message) -> None:
        assert self._feeder is not None
        self._buffer += message.get("body", b"")
        *events, self._buffer = self._buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        out: list[bytes] = []
        try:
            for event in events:
                if event.strip() == b"data: [DONE]":
                    out += await self._feeder.afinish()
                    out.append(_DONE)
                elif event.strip():
                    out += await self._feeder.afeed(event + b"\n\n")
            if not message.get("more_body", False):
                out += await self._feeder.afinish()
        except ViolationError as exc:
            out += [_event(_blocked(exc.decision)), _DONE]
        if self._feeder.ended and out and out[-1] != _DONE:
            out.append(_DONE)
        ended = self._feeder.ended and (
            self._feeder.decision is not None and not self._feeder.decision.allowed
        )
        more = message.get("more_body", False) and not ended
        await self._send({"type": "http.response.body", "body": b"".join(out), "more_body": more})
        if ended:
            self.cut.set()

    def _text_of(self, event: bytes) -> str:
        """The assistant text of an event ('' for comments, non-JSON data and chunks without content)."""
        payload = _event_data(event)
        if not isinstance(payload, dict) or "choices" not in payload:
            return ""
        self._last_chunk = payload
        return _shapes.text_of(payload)

    def _refusal(self, text: str) -> bytes:
        chunk = self._last_chunk
        return _event(_shapes.with_text(chunk, text) if chunk else _shapes.completion_dict(text, chunk=True))
