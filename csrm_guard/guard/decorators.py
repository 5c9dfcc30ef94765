"""``@guard.protect``: one decorator for plain functions, coroutines, generators and async generators.

The kind of the wrapped callable is decided once, at decoration time, and the matching wrapper is returned
with :func:`functools.wraps`, so type checkers and ``inspect.signature`` see the original signature. The
conversation is found in the ``messages`` argument (by name, configurable), else the first positional
argument. The output may be a string, an OpenAI-style completion (dict or object), or, for generators, chunks
of either kind.

The ``on_violation`` hook (sync or async) receives every decision whose outcome is not ``allow`` before the
action is applied; its return value is ignored.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from csrm_guard._types import Messages, Stage
from csrm_guard.errors import InputError, ViolationError
from csrm_guard.guard import _shapes
from csrm_guard.guard._core import Decision, new_request_id
from csrm_guard.guard.actions import PROCEED, aenforce_output, enforce_input, enforce_output
from csrm_guard.guard.stream import AsyncGuardedStream, GuardedStream

if TYPE_CHECKING:
    from csrm_guard.guard.guard import Guard

__all__ = ["Hook", "ProtectMixin", "Protected"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

Hook = Callable[[Decision], object] | Callable[[Decision], Awaitable[object]]
"""``on_violation`` callback: receives each non-allow decision; may be sync or async."""


class Protected(Protocol[P, R_co]):
    """A function wrapped by :meth:`Guard.protect`: same parameters and return type, plus ``.guard``."""

    guard: Guard

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the wrapped function under the guard."""
        ...


class ProtectMixin:
    """Adds :meth:`protect` to :class:`~csrm_guard.guard.Guard`."""

    @overload
    def protect(self, fn: Callable[P, R], /) -> Protected[P, R]: ...

    @overload
    def protect(
        self,
        *,
        stages: Iterable[Stage] = ...,
        on_violation: Hook | None = ...,
        messages_arg: str = ...,
    ) -> Callable[[Callable[P, R]], Protected[P, R]]: ...

    def protect(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        stages: Iterable[Stage] = ("input", "output"),
        on_violation: Hook | None = None,
        messages_arg: str = "messages",
    ) -> Any:
        """Guard an LLM-calling function: check its input before the call and its output after.

        Use as ``@guard.protect`` or ``@guard.protect(stages=..., on_violation=...)``.

        Args:
            fn: The function (sync, async, generator or async generator).
            stages: Which checks to run.
            on_violation: Called (sync or async) with every decision whose outcome is not ``allow``.
            messages_arg: The parameter holding the conversation (else the first positional argument).

        Returns:
            The wrapped function, or a decorator when called without ``fn``.

        Example:
            >>> from csrm_guard import Guard, Policy
            >>> from csrm_guard.testing import StaticScorer
            >>> guard = Guard(Policy(name="demo"), scorer=StaticScorer(0.0))
            >>> @guard.protect
            ... def answer(messages: list[dict[str, str]]) -> str:
            ...     return "hi"
            >>> answer([{"role": "user", "content": "hello"}])
            'hi'

        .. versionadded:: 0.1
        """
        options = _Options(self, frozenset(stages), on_violation, messages_arg)  # type: ignore[arg-type]
        if fn is None:
            return options.wrap
        return options.wrap(fn)


class _Options:
    """What one ``protect(...)`` call configured; builds the wrapper for each decorated function."""

    def __init__(self, guard: Guard, stages: frozenset[Stage], hook: Hook | None, messages_arg: str) -> None:
        unknown = stages - {"input", "output"}
        if unknown:
            raise ValueError(f"protect(stages=...) takes 'input' and/or 'output', got {sorted(unknown)}")
        self.guard, self.stages, self.messages_arg = guard, stages, messages_arg
        self.hook = hook

    def wrap(self, fn: Callable[..., Any]) -> Any:
        call = _Call(fn, self.messages_arg)
        if _is(fn, inspect.isasyncgenfunction):
            wrapper: Any = _async_gen_wrapper(self, fn, call)
        elif _is(fn, inspect.isgeneratorfunction):
            wrapper = _gen_wrapper(self, fn, call)
        elif _is(fn, inspect.iscoroutinefunction):
            wrapper = _async_wrapper(self, fn, call)
        else:
            wrapper = _sync_wrapper(self, fn, call)
        functools.update_wrapper(wrapper, fn)
        wrapper.guard = self.guard
        return wrapper

    def notify(self, decision: Decision) -> Decision:
        if self.hook is not None and decision.violated:
            result = self.hook(decision)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # avoid a "never awaited" warning on top of the error
                raise TypeError("an async on_violation hook needs an async function; use a sync hook here")
        return decision

    async def anotify(self, decision: Decision) -> Decision:
        if self.hook is not None and decision.violated:
            result = self.hook(decision)
            if inspect.isawaitable(result):
                await result
        return decision


def _is(fn: Any, predicate: Callable[[Any], bool]) -> bool:
    # Sees through functools.partial (inspect does) and callable objects (their __call__), like tenacity.
    return predicate(fn) or predicate(getattr(fn, "__call__", None))  # noqa: B004


class _Call:
    """Finds the conversation in a call's arguments and replaces it for regeneration."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn, self.name = fn, name
        self.signature = inspect.signature(fn)
        params = [p for p in self.signature.parameters.values() if p.name not in ("self", "cls")]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        named = self.signature.parameters.get(name)
        self.param = named.name if named is not None else (positional[0].name if positional else None)
        self.annotation = _return_annotation(fn)

    def messages(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Messages:
        if self.name in kwargs:
            return kwargs[self.name]  # type: ignore[no-any-return]
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        if self.param is not None and self.param in bound:
            return bound[self.param]  # type: ignore[no-any-return]
        raise InputError(
            f"cannot find the conversation in the call to {self.fn.__qualname__}: "
            f"pass it as the first argument or as {self.name}=",
            location="messages",
        )

    def replace(self, args: tuple[Any, ...], kwargs: dict[str, Any], messages: Messages) -> tuple[Any, Any]:
        if self.name in kwargs or self.param is None:
            return args, {**kwargs, self.name: messages}
        bound = self.signature.bind(*args, **kwargs)
        bound.arguments[self.param] = messages
        return bound.args, bound.kwargs


def _return_annotation(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable forward references: fall back to plain-text refusals
        return None


def _sync_wrapper(options: _Options, fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    guard = options.guard

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        messages, rid = call.messages(args, kwargs), new_request_id()
        if "input" in options.stages:
            decision = options.notify(guard.check_input(messages, request_id=rid))
            early = enforce_input(guard, decision, _shapes.refusal_from_annotation(call.annotation))
            if early is not PROCEED:
                return early
        output = fn(*args, **kwargs)
        if "output" not in options.stages:
            return output

        def check(candidate: Any) -> Decision:
            text = _shapes.text_of(candidate)
            return options.notify(guard.check_output(messages, text, request_id=rid))

        def generate(new: Messages) -> Any:
            new_args, new_kwargs = call.replace(args, kwargs, new)
            return fn(*new_args, **new_kwargs)

        return enforce_output(
            guard, check(output), output, messages=messages, generate=generate, check=check,
            with_text=_shapes.with_text,
        )  # fmt: skip

    return wrapper


def _async_wrapper(options: _Options, fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    guard = options.guard
    annotation = call.annotation

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        messages, rid = call.messages(args, kwargs), new_request_id()
        if "input" in options.stages:
            decision = await options.anotify(await guard.acheck_input(messages, request_id=rid))
            early = enforce_input(guard, decision, _shapes.refusal_from_annotation(annotation))
            if early is not PROCEED:
                return early
        output = await fn(*args, **kwargs)
        if "output" not in options.stages:
            return output

        async def check(candidate: Any) -> Decision:
            text = _shapes.text_of(candidate)
            return await options.anotify(await guard.acheck_output(messages, text, request_id=rid))

        async def generate(new: Messages) -> Any:
            new_args, new_kwargs = call.replace(args, kwargs, new)
            return await fn(*new_args, **new_kwargs)

        return await aenforce_output(
            guard, await check(output), output, messages=messages, generate=generate, check=check,
            with_text=_shapes.with_text,
        )  # fmt: skip

    return wrapper


class _ChunkShape:
    """Remembers the last chunk seen so a refusal can be yielded in the same shape."""

    def __init__(self, annotation: Any) -> None:
        self.last: Any = None
        self.fallback = _shapes.refusal_from_annotation(_shapes.yield_annotation(annotation), chunk=True)

    def text_of(self, chunk: Any) -> str:
        self.last = chunk
        return _shapes.text_of(chunk)

    def refusal(self, text: str) -> Any:
        return self.fallback(text) if self.last is None else _shapes.with_text(self.last, text)


def _gen_wrapper(options: _Options, fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    guard = options.guard

    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        messages, rid = call.messages(args, kwargs), new_request_id()
        shape = _ChunkShape(call.annotation)
        if "input" in options.stages:
            decision = options.notify(guard.check_input(messages, request_id=rid))
            early = enforce_input(guard, decision, shape.refusal)
            if early is not PROCEED:
                yield early
                return
        if "output" not in options.stages:
            yield from fn(*args, **kwargs)
            return
        stream = GuardedStream(
            guard,
            messages,
            fn(*args, **kwargs),
            request_id=rid,
            text_of=shape.text_of,
            refusal_of=shape.refusal,
        )
        with stream:
            try:
                yield from stream
            except ViolationError as exc:
                options.notify(exc.decision)
                raise
        if stream.decision is not None:
            options.notify(stream.decision)

    return wrapper


def _async_gen_wrapper(options: _Options, fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    guard = options.guard

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        messages, rid = call.messages(args, kwargs), new_request_id()
        shape = _ChunkShape(call.annotation)
        if "input" in options.stages:
            decision = await options.anotify(await guard.acheck_input(messages, request_id=rid))
            early = enforce_input(guard, decision, shape.refusal)
            if early is not PROCEED:
                yield early
                return
        upstream = fn(*args, **kwargs)
        if "output" not in options.stages:
            async for chunk in upstream:
                yield chunk
            return
        stream = AsyncGuardedStream(
            guard, messages, upstream, request_id=rid, text_of=shape.text_of, refusal_of=shape.refusal
        )
        async with stream:
            try:
                async for chunk in stream:
                    yield chunk
            except ViolationError as exc:
                await options.anotify(exc.decision)
                raise
        if stream.decision is not None:
            await options.anotify(stream.decision)

    return wrapper
