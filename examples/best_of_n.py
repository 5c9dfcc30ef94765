"""best_of_n: when an answer violates, sample n candidates and keep the compliant one with the highest reward.

Run: python examples/best_of_n.py
"""

from __future__ import annotations

import asyncio
import itertools

from csrm_guard import Guard, Policy, StageSettings
from csrm_guard.testing import FakeScorer

# The stand-in model scores how edgy a draft is: the more "!" the riskier.


def fake_model(clause, transcript: str) -> float:
    """A stand-in for the model: each "!" in the draft makes it riskier."""
    if clause.id != "harassment":
        return 0.01
    return min(0.99, 0.1 + 0.2 * transcript.rsplit("[judged]", maxsplit=1)[-1].count("!"))


scorer = FakeScorer(fake_model)
policy = Policy(
    name="best-of-n-demo",
    categories={"harassment": {}},
    output=StageSettings(action="best_of_n", candidates=4),
)

drafts = itertools.cycle(
    ["Buy now!!!!", "Our plan suits teams well.", "Try it!!", "It's great!", "Honestly fine."]
)


async def main() -> None:
    async with Guard(policy, scorer=scorer) as guard:

        @guard.protect(stages=("output",))
        async def write_tagline(messages: list[dict[str, str]]) -> str:
            await asyncio.sleep(0.001)  # one sampled LLM completion
            return next(drafts)

        print(
            "chosen:", await write_tagline([{"role": "user", "content": "Write a tagline for our product"}])
        )
        # Rank candidates yourself with the reward (log-odds of compliance):
        for draft in ["Calm and clear.", "Wow!!"]:
            decision = await guard.acheck_output([{"role": "user", "content": "tagline"}], draft)
            print(f"{draft!r}: reward={decision.reward:+.2f} allowed={decision.allowed}")


asyncio.run(main())
