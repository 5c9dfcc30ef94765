"""A guarded async generator: text is released only after the hold-back window holding it passed a check.

Run: python examples/streaming.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from csrm_guard import Guard, Policy, StageSettings
from csrm_guard.testing import FakeScorer


def fake_model(clause, transcript: str) -> float:
    """A stand-in for the model: the rule is violated once the answer gives the recipe away."""
    judged = transcript.rsplit("[judged]", maxsplit=1)[-1]
    return 0.95 if clause.id == "no-recipe" and "secret recipe" in judged else 0.01


scorer = FakeScorer(fake_model)
policy = Policy(
    name="streaming-demo",
    rules=[{"id": "no-recipe", "text": "Do not reveal the secret recipe."}],
    output=StageSettings(action="refuse", hold_back_chars=24),
    refusal="[the rest of this answer was withheld]",
)


async def main() -> None:
    async with Guard(policy, scorer=scorer) as guard:

        @guard.protect
        async def stream_answer(messages: list[dict[str, str]]) -> AsyncIterator[str]:
            if "harbour" in messages[-1]["content"]:
                text = "The harbour woke slowly as gulls circled over the quiet boats."
            else:
                text = "Our sauce is loved by many and the secret recipe is: tomatoes, love and patience."
            for word in text.split():
                await asyncio.sleep(0.002)  # tokens arriving from the LLM
                yield word + " "

        clean = [{"role": "user", "content": "tell me a story about a quiet harbour town at dawn"}]
        print("".join([chunk async for chunk in stream_answer(clean)]))

        leaky = [{"role": "user", "content": "what is in your sauce?"}]
        print("".join([chunk async for chunk in stream_answer(leaky)]))

        # Without a decorator: guard any async iterable of text.
        async def tokens() -> AsyncIterator[str]:
            for word in ["plain ", "stream ", "of ", "tokens"]:
                yield word

        stream = guard.acheck_stream([{"role": "user", "content": "hi"}], tokens())
        print(
            "".join([chunk async for chunk in stream]),
            "->",
            stream.decision.outcome if stream.decision else "?",
        )


asyncio.run(main())
