"""Tests of @guard.protect: dispatch on function kind, finding messages and outputs, hooks and signatures."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from csrm_guard import InputError, ViolationError
from csrm_guard.guard._shapes import completion_dict
from csrm_guard.testing import capture_decisions

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello"}]
BAD = [{"role": "user", "content": "FORBIDDEN question"}]
REFUSAL = "I can't help with that request."


class TestFunctions:
    async def test_allowed_call_returns_output(self, driver, guard_factory) -> None:
        """A clean call returns the function's output and records an input and an output decision."""
        guard = guard_factory()
        fn = guard.protect(driver.function(lambda messages: "fine answer"))
        with capture_decisions() as decisions:
            assert await driver.call(fn, USER) == "fine answer"
        assert [d.stage for d in decisions] == ["input", "output"]
        assert decisions[0].request_id == decisions[1].request_id

    async def test_input_block_raises_without_calling(self, driver, guard_factory) -> None:
        """A blocked input raises ViolationError with the decision and never calls the function."""
        calls: list[Any] = []
        guard = guard_factory()
        fn = guard.protect(driver.function(lambda messages: calls.append(messages) or "x"))
        with pytest.raises(ViolationError) as info:
            await driver.call(fn, BAD)
        assert info.value.decision.stage == "input"
        assert calls == []

    async def test_output_refuse_returns_refusal_string(self, driver, guard_factory) -> None:
        """A refused string output is replaced by the policy's refusal text."""
        guard = guard_factory(output={"action": "refuse"})
        fn = guard.protect(driver.function(lambda messages: "FORBIDDEN answer"))
        assert await driver.call(fn, USER) == REFUSAL

    async def test_refusal_keeps_dict_shape(self, driver, guard_factory) -> None:
        """A refused OpenAI-style dict keeps its shape with the refusal as content."""
        guard = guard_factory(output={"action": "refuse"})
        fn = guard.protect(driver.function(lambda messages: completion_dict("FORBIDDEN text")))
        result = await driver.call(fn, USER)
        assert result["object"] == "chat.completion"
        assert result["choices"][0]["message"]["content"] == REFUSAL
        assert result["choices"][0]["finish_reason"] == "content_filter"

    async def test_refusal_keeps_openai_object_type(self, driver, guard_factory) -> None:
        """A refused openai ChatCompletion comes back as a ChatCompletion."""
        guard = guard_factory(output={"action": "refuse"})
        completion = ChatCompletion.model_validate(completion_dict("FORBIDDEN text"))
        fn = guard.protect(driver.function(lambda messages: completion))
        result = await driver.call(fn, USER)
        assert isinstance(result, ChatCompletion)
        assert result.choices[0].message.content == REFUSAL

    async def test_input_refusal_follows_return_annotation(self, guard_factory) -> None:
        """Refused before any output exists, the refusal is built from the return annotation."""
        guard = guard_factory(input={"action": "refuse"})

        @guard.protect
        def as_dict(messages: list[dict[str, str]]) -> dict[str, Any]:
            raise AssertionError("not called")

        @guard.protect
        def as_object(messages: list[dict[str, str]]) -> ChatCompletion:
            raise AssertionError("not called")

        assert as_dict(BAD)["choices"][0]["message"]["content"] == REFUSAL
        assert as_object(BAD).choices[0].message.content == REFUSAL

    async def test_output_stage_only(self, driver, guard_factory) -> None:
        """stages=("output",) skips the input check."""
        guard = guard_factory()
        fn = guard.protect(stages=("output",))(driver.function(lambda messages: "ok"))
        with capture_decisions() as decisions:
            assert await driver.call(fn, BAD) == "ok"
        assert [d.stage for d in decisions] == ["output"]

    def test_unknown_stage_is_rejected(self, guard_factory) -> None:
        """A misspelt stage fails at decoration time."""
        with pytest.raises(ValueError, match="outptu"):
            guard_factory().protect(stages=("outptu",))


class TestArguments:
    async def test_messages_keyword_and_custom_name(self, driver, guard_factory) -> None:
        """The conversation is found by keyword, and under a configured parameter name."""
        guard = guard_factory()

        def impl(model: str, *, messages: Any = None, chat: Any = None) -> str:
            return "ok"

        by_keyword = guard.protect(driver.function(lambda messages: "ok"))
        with pytest.raises(ViolationError):
            await driver.call(by_keyword, messages=BAD)
        custom = guard.protect(messages_arg="chat")(impl)
        with pytest.raises(ViolationError):
            custom("gpt", chat=BAD)

    def test_method_skips_self(self, guard_factory) -> None:
        """On a method, the first argument after self is the conversation."""
        guard = guard_factory()

        class Bot:
            @guard.protect
            def reply(self, convo: list[dict[str, str]]) -> str:
                return "ok"

        assert Bot().reply(USER) == "ok"
        with pytest.raises(ViolationError):
            Bot().reply(BAD)

    def test_missing_messages_is_an_input_error(self, guard_factory) -> None:
        """A call without a conversation fails with an InputError naming the function."""

        @guard_factory().protect
        def nothing() -> str:
            return "x"

        with pytest.raises(InputError, match="nothing"):
            nothing()

    def test_wrapper_keeps_metadata_and_exposes_guard(self, guard_factory) -> None:
        """The wrapper keeps name, docstring and signature, and exposes .guard."""
        guard = guard_factory()

        @guard.protect
        async def answer(messages: list[dict[str, str]], temperature: float = 0.2) -> str:
            """Answer politely."""
            return "ok"

        assert answer.__name__ == "answer"
        assert answer.__doc__ == "Answer politely."
        assert list(inspect.signature(answer).parameters) == ["messages", "temperature"]
        assert inspect.iscoroutinefunction(answer)
        assert answer.guard is guard

    def test_unknown_output_type_is_an_input_error(self, guard_factory) -> None:
        """An output with no findable text is an InputError, not a silent pass."""

        @guard_factory().protect
        def weird(messages: Any) -> object:
            return 42

        with pytest.raises(InputError, match="int"):
            weird(USER)


class TestHooks:
    async def test_sync_and_async_hooks_see_violations(self, driver, guard_factory) -> None:
        """on_violation receives every non-allow decision; async hooks are awaited in async code."""
        seen: list[str] = []
        guard = guard_factory(output={"action": "monitor"})

        def sync_hook(decision: Any) -> None:
            seen.append(decision.outcome)

        fn = guard.protect(on_violation=sync_hook)(driver.function(lambda messages: "FORBIDDEN"))
        assert await driver.call(fn, USER) == "FORBIDDEN"
        assert seen == ["monitor"]
        if driver.kind == "async":

            async def async_hook(decision: Any) -> None:
                seen.append("async:" + decision.outcome)

            afn = guard.protect(on_violation=async_hook)(driver.function(lambda messages: "FORBIDDEN"))
            await afn(USER)
            assert seen[-1] == "async:monitor"

    def test_async_hook_on_sync_function_fails_clearly(self, guard_factory) -> None:
        """An async hook on a sync function raises a TypeError instead of silently not running."""

        async def hook(decision: Any) -> None:
            return None

        fn = guard_factory().protect(on_violation=hook)(lambda messages: "x")
        with pytest.raises(TypeError, match="async on_violation"):
            fn(BAD)


class TestGenerators:
    def test_sync_generator_streams_and_refuses(self, guard_factory) -> None:
        """A generator's chunks pass through when clean; a violation ends it with a refusal chunk."""
        guard = guard_factory(output={"action": "refuse", "hold_back_chars": 4})

        @guard.protect
        def gen(messages: Any, text: str) -> Iterator[str]:
            yield from (text[i : i + 3] for i in range(0, len(text), 3))

        assert "".join(gen(USER, "all good here")) == "all good here"
        chunks = list(gen(USER, "abcdefFORBIDDEN tail"))
        assert chunks[-1] == REFUSAL
        assert "FORBIDDEN" not in "".join(chunks[:-1])

    async def test_async_generator_dict_chunks(self, guard_factory) -> None:
        """An async generator of OpenAI chunk dicts ends with a refusal chunk of the same shape."""
        guard = guard_factory(output={"action": "refuse", "hold_back_chars": 5})

        @guard.protect
        async def gen(messages: Any) -> AsyncIterator[dict[str, Any]]:
            for word in ["hello ", "there ", "FORBIDDEN ", "stuff"]:
                yield completion_dict(word, chunk=True)

        chunks = [chunk async for chunk in gen(USER)]
        texts = [chunk["choices"][0]["delta"]["content"] for chunk in chunks]
        assert texts == ["hello ", "there ", REFUSAL]
        assert chunks[-1]["object"] == "chat.completion.chunk"

    async def test_async_generator_input_block(self, guard_factory) -> None:
        """A blocked input raises from the first iteration of an async generator."""

        @guard_factory().protect
        async def gen(messages: Any) -> AsyncIterator[str]:
            yield "never"

        with pytest.raises(ViolationError):
            [chunk async for chunk in gen(BAD)]

    def test_generator_input_refusal_is_one_chunk(self, guard_factory) -> None:
        """A refused input yields exactly the refusal, without running the generator."""

        @guard_factory(input={"action": "refuse"}).protect
        def gen(messages: Any) -> Iterator[str]:
            raise AssertionError("not run")
            yield "x"

        assert list(gen(BAD)) == [REFUSAL]
