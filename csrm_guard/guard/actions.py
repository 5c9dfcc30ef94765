"""The actions a policy takes on a violation: block, refuse, regenerate, best_of_n and monitor.

These functions act on a :class:`~csrm_guard.guard._core.Decision` that a check already returned; they are
shared by the decorator and the OpenAI wrapper, which supply how to check an output and how to generate one
again.

- ``block`` raises :class:`~csrm_guard.errors.ViolationError` carrying the decision.
- ``refuse`` returns the policy's rendered refusal, in the shape of the output (or of the function's
  annotation).
- ``regenerate`` calls the generator again with the violation fed back as a system message, up to the stage's
  ``max_attempts`` (the first call included), waiting with exponential backoff between attempts (tenacity). If
  the last attempt still violates, the refusal is returned.
- ``best_of_n`` generates ``candidates`` new outputs (concurrently in async code), checks each, and returns
  the allowed one with the highest reward; when none is allowed, the refusal.
- ``monitor`` returns the output unchanged; the guard has already logged what would have happened.

At the input stage nothing has been generated yet, so ``regenerate`` and ``best_of_n`` refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from csrm_guard._types import Messages
from csrm_guard.errors import ViolationError
from csrm_guard.guard._core import Decision

if TYPE_CHECKING:
    from csrm_guard.guard.guard import Guard

__all__ = ["PROCEED", "aenforce_output", "enforce_input", "enforce_output", "feedback_messages"]

R = TypeVar("R")
PROCEED: Any = object()
"""Returned by :func:`enforce_input` when the call may go ahead."""

Check = Callable[[R], Decision]
ACheck = Callable[[R], Awaitable[Decision]]


def feedback_messages(messages: Messages, decision: Decision) -> list[dict[str, str]]:
    """Return ``messages`` plus a system message telling the model why its last answer was withheld."""
    ids = ", ".join(violation.id for violation in decision.violations) or "the policy"
    note = (
        f"Your previous answer was withheld because it violated the content policy ({ids}). "
        "Write a new answer that fully complies with the policy."
    )
    return [
        *({"role": str(m["role"]), "content": str(m["content"])} for m in messages),
        {"role": "system", "content": note},
    ]


def enforce_input(guard: Guard, decision: Decision, refusal: Callable[[str], R]) -> R:
    """Act on an input-stage decision: :data:`PROCEED`, a refusal built by ``refusal``, or raise.

    Raises:
        ViolationError: When the outcome is ``block``.
    """
    if decision.allowed:
        return PROCEED  # type: ignore[no-any-return]
    if decision.outcome == "block":
        raise ViolationError(decision)
    return refusal(_refusal_text(guard, decision))


def _final(guard: Guard, decision: Decision, output: R, with_text: Callable[[R, str], R]) -> R:
    if decision.allowed:
        return output
    if decision.outcome == "block":
        raise ViolationError(decision)
    return with_text(output, _refusal_text(guard, decision))


def _refusal_text(guard: Guard, decision: Decision) -> str:
    return decision.refusal or guard.core.refusal(decision.stage, decision.violations)


def _retrying_kwargs(guard: Guard) -> dict[str, Any]:
    settings = guard.core.settings("output")
    return {
        "stop": stop_after_attempt(settings.max_attempts - 1),
        "wait": wait_exponential(multiplier=guard.regenerate_backoff, max=2),
        "retry": retry_if_result(lambda pair: pair[1].outcome == "regenerate"),
        "retry_error_callback": _last_result,
        "reraise": True,
    }


def _last_result(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


def enforce_output(
    guard: Guard,
    decision: Decision,
    output: R,
    *,
    messages: Messages,
    generate: Callable[[Messages], R],
    check: Check[R],
    with_text: Callable[[R, str], R],
) -> R:
    """Act on an output-stage decision (sync).

    Args:
        guard: The guard (for settings and the refusal).
        decision: The decision on ``output``.
        output: What the wrapped call returned.
        messages: The original conversation.
        generate: Produces a new output for a conversation (``regenerate`` and ``best_of_n``).
        check: Checks an output and returns its decision.
        with_text: Puts a refusal into an output's shape.

    Returns:
        The output to hand to the caller.

    Raises:
        ViolationError: When the final outcome is ``block``.
    """
    if decision.outcome == "regenerate" and guard.core.settings("output").max_attempts > 1:
        last = [decision]

        def attempt() -> tuple[R, Decision]:
            new = generate(feedback_messages(messages, last[0]))
            last[0] = check(new)
            return new, last[0]

        output, decision = Retrying(**_retrying_kwargs(guard))(attempt)
    elif decision.outcome == "best_of_n":
        candidates = [generate(messages) for _ in range(guard.core.settings("output").candidates)]
        return _pick(guard, decision, output, candidates, [check(c) for c in candidates], with_text)
    return _final(guard, decision, output, with_text)


async def aenforce_output(
    guard: Guard,
    decision: Decision,
    output: R,
    *,
    messages: Messages,
    generate: Callable[[Messages], Awaitable[R]],
    check: ACheck[R],
    with_text: Callable[[R, str], R],
) -> R:
    """Async twin of :func:`enforce_output`; ``best_of_n`` candidates are generated concurrently."""
    if decision.outcome == "regenerate" and guard.core.settings("output").max_attempts > 1:
        last = [decision]

        async def attempt() -> tuple[R, Decision]:
            """One regeneration: generate with feedback, then check."""
            new = await generate(feedback_messages(messages, last[0]))
            last[0] = await check(new)
            return new, last[0]

        output, decision = await AsyncRetrying(**_retrying_kwargs(guard))(attempt)
    elif decision.outcome == "best_of_n":
        n = guard.core.settings("output").candidates
        candidates = list(await asyncio.gather(*(generate(messages) for _ in range(n))))
        decisions = list(await asyncio.gather(*(check(candidate) for candidate in candidates)))
        return _pick(guard, decision, output, candidates, decisions, with_text)
    return _final(guard, decision, output, with_text)


def _pick(  # noqa: PLR0917  (private helper; every argument is needed)
    guard: Guard,
    decision: Decision,
    output: R,
    candidates: Sequence[R],
    decisions: Sequence[Decision],
    with_text: Callable[[R, str], R],
) -> R:
    allowed = [(d.reward, i) for i, d in enumerate(decisions) if d.allowed]
    if not allowed:
        return with_text(output, _refusal_text(guard, decision))
    best = max(allowed, key=lambda pair: (pair[0], -pair[1]))  # ties go to the earliest candidate
    return candidates[best[1]]
