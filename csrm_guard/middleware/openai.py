"""Drop-in guarded wrappers for the official ``openai`` client's ``chat.completions.create``.

``GuardedOpenAI(client, guard)`` and ``GuardedAsyncOpenAI(client, guard)`` behave like the client they wrap;
only ``chat.completions.create`` is guarded: the last user turn is checked before the request, and the first
choice of the completion after it. With ``stream=True`` the returned stream releases chunks only after the
hold-back window holding them has passed a check (see :mod:`csrm_guard.guard.stream`). Everything else
(``models``, ``embeddings``, ...) is forwarded to the wrapped client untouched.

Example:
    >>> import openai  # doctest: +SKIP
    >>> client = GuardedOpenAI(openai.OpenAI(), guard)  # doctest: +SKIP
    >>> client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # doctest: +SKIP
"""

from __future__ import annotations

from csrm_guard._compat import require

require("openai", extra="openai")

import logging  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from typing import Any  # noqa: E402

import openai  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

from csrm_guard._types import Messages, Stage  # noqa: E402
from csrm_guard.guard import (  # noqa: E402
    Decision,
    Guard,
    _shapes,
)
from csrm_guard.guard._core import new_request_id  # noqa: E402
from csrm_guard.guard.actions import PROCEED, aenforce_output, enforce_input, enforce_output  # noqa: E402
from csrm_guard.guard.stream import AsyncGuardedStream, GuardedStream  # noqa: E402

__all__ = ["GuardedAsyncOpenAI", "GuardedOpenAI"]

logger = logging.getLogger(__name__)


def _refusal(stream: bool, model: str) -> Any:
    def build(text: str) -> Any:
        if stream:
            return _OneChunk(
                ChatCompletionChunk.model_validate(_shapes.completion_dict(text, chunk=True, model=model))
            )
        return ChatCompletion.model_validate(_shapes.completion_dict(text, model=model))

    return build


class _OneChunk:
    """A finished stream of one refusal chunk, usable like the client's ``Stream``/``AsyncStream``."""

    def __init__(self, chunk: ChatCompletionChunk) -> None:
        self._chunks = [chunk]

    def __iter__(self) -> _OneChunk:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if not self._chunks:
            raise StopIteration
        return self._chunks.pop()

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop()

    def close(self) -> None:
        """Drop the chunk."""
        self._chunks.clear()

    async def aclose(self) -> None:
        """Drop the chunk."""
        self._chunks.clear()

    def __enter__(self) -> _OneChunk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> _OneChunk:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Chunks:
    """Refusal chunks shaped like the last chunk seen."""

    def __init__(self) -> None:
        self.last: Any = None

    def text_of(self, chunk: Any) -> str:
        self.last = chunk
        return _shapes.text_of(chunk)

    def refusal(self, text: str) -> Any:
        if self.last is None:
            return ChatCompletionChunk.model_validate(_shapes.completion_dict(text, chunk=True))
        return _shapes.with_text(self.last, text)


class _Completions:
    """Guarded stand-in for ``client.chat.completions`` (sync)."""

    def __init__(self, inner: Any, guard: Guard, stages: frozenset[Stage]) -> None:
        self._inner, self._guard, self._stages = inner, guard, stages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create(self, **kwargs: Any) -> Any:
        """Like ``chat.completions.create``, guarded; raises ViolationError when the policy blocks."""
        messages: Messages = kwargs["messages"]
        stream, rid = bool(kwargs.get("stream")), new_request_id()
        if "input" in self._stages:
            decision = self._guard.check_input(messages, request_id=rid)
            early = enforce_input(self._guard, decision, _refusal(stream, str(kwargs.get("model", ""))))
            if early is not PROCEED:
                return early
        result = self._inner.create(**kwargs)
        if "output" not in self._stages:
            return result
        if stream:
            chunks = _Chunks()
            return GuardedStream(
                self._guard,
                messages,
                result,
                request_id=rid,
                text_of=chunks.text_of,
                refusal_of=chunks.refusal,
            )

        def check(completion: Any) -> Decision:
            return self._guard.check_output(messages, _shapes.text_of(completion), request_id=rid)

        def generate(new: Messages) -> Any:
            return self._inner.create(**{**kwargs, "messages": new})

        return enforce_output(
            self._guard, check(result), result, messages=messages, generate=generate, check=check,
            with_text=_shapes.with_text,
        )  # fmt: skip


class _AsyncCompletions(_Completions):
    """Guarded stand-in for ``client.chat.completions`` (async)."""

    async def create(self, **kwargs: Any) -> Any:
        """Like ``chat.completions.create``, guarded; raises ViolationError when the policy blocks."""
        messages: Messages = kwargs["messages"]
        stream, rid = bool(kwargs.get("stream")), new_request_id()
        if "input" in self._stages:
            decision = await self._guard.acheck_input(messages, request_id=rid)
            early = enforce_input(self._guard, decision, _refusal(stream, str(kwargs.get("model", ""))))
            if early is not PROCEED:
                return early
        result = await self._inner.create(**kwargs)
        if "output" not in self._stages:
            return result
        if stream:
            chunks = _Chunks()
            return AsyncGuardedStream(
                self._guard,
                messages,
                result,
                request_id=rid,
                text_of=chunks.text_of,
                refusal_of=chunks.refusal,
            )

        async def check(completion: Any) -> Decision:
            return await self._guard.acheck_output(messages, _shapes.text_of(completion), request_id=rid)

        async def generate(new: Messages) -> Any:
            return await self._inner.create(**{**kwargs, "messages": new})

        return await aenforce_output(
            self._guard, await check(result), result, messages=messages, generate=generate, check=check,
            with_text=_shapes.with_text,
        )  # fmt: skip


class _Chat:
    def __init__(self, inner: Any, completions: _Completions) -> None:
        self._inner, self.completions = inner, completions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GuardedOpenAI:
    """An ``openai.OpenAI`` client whose ``chat.completions.create`` is guarded.

    Args:
        client: The client to wrap.
        guard: The guard enforcing the policy.
        stages: Which checks to run.

    .. versionadded:: 0.1
    """

    def __init__(
        self, client: openai.OpenAI, guard: Guard, *, stages: Iterable[Stage] = ("input", "output")
    ) -> None:
        self.client, self.guard = client, guard
        self.chat = _Chat(client.chat, _Completions(client.chat.completions, guard, frozenset(stages)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class GuardedAsyncOpenAI:
    """An ``openai.AsyncOpenAI`` client whose ``chat.completions.create`` is guarded (async twin).

    Args:
        client: The client to wrap.
        guard: The guard enforcing the policy.
        stages: Which checks to run.

    .. versionadded:: 0.1
    """

    def __init__(
        self, client: openai.AsyncOpenAI, guard: Guard, *, stages: Iterable[Stage] = ("input", "output")
    ) -> None:
        self.client, self.guard = client, guard
        self.chat = _Chat(client.chat, _AsyncCompletions(client.chat.completions, guard, frozenset(stages)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
