"""Framework-neutral before/after-generation hooks, for chat stacks other than ASGI apps and the openai client.

Call :meth:`GuardHooks.before_generation` with the conversation before asking the model, and
:meth:`GuardHooks.after_generation` with its answer; each returns a :class:`HookResult` saying whether to go
on, and, when not, the text to show instead. ``block`` raises :class:`~csrm_guard.errors.ViolationError`, as
everywhere else. Pass the first result's ``request_id`` to the second call so that both decisions are
correlated.

Example:
    >>> from csrm_guard import Guard, Policy
    >>> from csrm_guard.testing import StaticScorer
    >>> hooks = GuardHooks(Guard(Policy(name="demo"), scorer=StaticScorer(0.0)))
    >>> before = hooks.before_generation([{"role": "user", "content": "hi"}])
    >>> before.proceed
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from csrm_guard._types import Messages
from csrm_guard.errors import ViolationError
from csrm_guard.guard import Decision, Guard

__all__ = ["GuardHooks", "HookResult"]


@dataclass(frozen=True, slots=True)
class HookResult:
    """What a hook decided.

    Attributes:
        decision: The guard's decision.
        proceed: Input: call the model. Output: deliver the model's answer.
        text: When not proceeding, the policy's refusal to show instead.
    """

    decision: Decision
    proceed: bool
    text: str | None = None

    @property
    def request_id(self) -> str:
        """The request id to pass to the next hook of the same exchange."""
        return self.decision.request_id


class GuardHooks:
    """Before/after-generation hooks over a guard.

    Args:
        guard: The guard enforcing the policy.

    .. versionadded:: 0.1
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def before_generation(self, messages: Messages, *, request_id: str | None = None) -> HookResult:
        """Check the user's turn before generation.

        Raises:
            ViolationError: When the policy blocks.
        """
        return self._result(self.guard.check_input(messages, request_id=request_id))

    def after_generation(
        self, messages: Messages, response: str, *, request_id: str | None = None
    ) -> HookResult:
        """Check the model's answer before it is shown.

        Raises:
            ViolationError: When the policy blocks.
        """
        return self._result(self.guard.check_output(messages, response, request_id=request_id))

    async def abefore_generation(self, messages: Messages, *, request_id: str | None = None) -> HookResult:
        """Async twin of :meth:`before_generation`."""
        return self._result(await self.guard.acheck_input(messages, request_id=request_id))

    async def aafter_generation(
        self, messages: Messages, response: str, *, request_id: str | None = None
    ) -> HookResult:
        """Async twin of :meth:`after_generation`."""
        return self._result(await self.guard.acheck_output(messages, response, request_id=request_id))

    def _result(self, decision: Decision) -> HookResult:
        if decision.allowed:
            return HookResult(decision, proceed=True)
        if decision.outcome == "block":
            raise ViolationError(decision)
        return HookResult(
            decision, proceed=False, text=self.guard.core.refusal(decision.stage, decision.violations)
        )
