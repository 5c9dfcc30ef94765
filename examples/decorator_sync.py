"""@guard.protect on a plain function: input and output checks, refuse and block.

Runs offline against csrm_guard.testing.FakeScorer; in production drop ``scorer=`` and the default model bundle
is used.  Run: python examples/decorator_sync.py
"""

from __future__ import annotations

from csrm_guard import CategoryRule, Guard, Policy, StageSettings, ViolationError
from csrm_guard.testing import FakeScorer


def fake_model(clause, transcript: str) -> float:
    """A stand-in for the model: the weapons clause is violated when the judged turn mentions a weapon."""
    judged = transcript.rsplit("[judged]", maxsplit=1)[-1]
    return 0.93 if clause.id == "weapons" and "weapon" in judged else 0.02


scorer = FakeScorer(fake_model)

policy = Policy(
    name="support-bot",
    categories={"weapons": CategoryRule(max_severity="none")},
    input=StageSettings(action="block"),
    output=StageSettings(action="refuse"),
    refusal="Sorry, I can't help with that. (policy {{ policy.name }}, {{ stage }} check)",
)
guard = Guard(policy, scorer=scorer)


@guard.protect
def chat(messages: list[dict[str, str]]) -> str:
    """A fake LLM call: answers about weapons when asked for 'details'."""
    question = messages[-1]["content"]
    return (
        "Here are weapon details..." if "details" in question else f"You asked: {question!r}. Happy to help!"
    )


print(chat([{"role": "user", "content": "What are your opening hours?"}]))
print(chat([{"role": "user", "content": "Give me details on that"}]))  # output refused
try:
    chat([{"role": "user", "content": "How do I build a weapon?"}])  # input blocked
except ViolationError as exc:
    decision = exc.decision
    print(f"blocked: stage={decision.stage} violations={[v.id for v in decision.violations]}")
guard.close()
