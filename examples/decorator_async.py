"""@guard.protect on a coroutine, with many concurrent calls and an on_violation hook.

Run: python examples/decorator_async.py
"""

from __future__ import annotations

import asyncio

from csrm_guard import Decision, Guard, Policy, StageSettings
from csrm_guard.testing import FakeScorer


async def fake_model(clause, transcript: str) -> float:
    """An async stand-in for the model."""
    await asyncio.sleep(0.001)
    return (
        0.9
        if clause.id == "harassment" and "insult" in transcript.rsplit("[judged]", maxsplit=1)[-1]
        else 0.05
    )


async def main() -> None:
    policy = Policy(name="async-demo", categories={"harassment": {}}, output=StageSettings(action="refuse"))
    flagged: list[str] = []

    async def on_violation(decision: Decision) -> None:
        flagged.append(f"{decision.stage}:{decision.outcome}")

    async with Guard(policy, scorer=FakeScorer(fake_model)) as guard:

        @guard.protect(on_violation=on_violation)
        async def chat(messages: list[dict[str, str]]) -> str:
            await asyncio.sleep(0.001)  # the network call to your LLM
            n = int(messages[-1]["content"].split()[-1])
            return "an insult" if n % 4 == 0 else f"a kind answer to question {n}"

        answers = await asyncio.gather(
            *(chat([{"role": "user", "content": f"question {n}"}]) for n in range(12))
        )
    for answer in answers:
        print(answer)
    print("flagged:", flagged)


asyncio.run(main())
