"""The example policies' test turns, which hand-written training data must not copy (they stay a held-out check)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from csrm_guard import load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CLOSE = 0.55  # difflib ratio; unrelated questions of the same shape score up to ~0.5


def policy_test_turns() -> list[str]:
    """Every message and response of every test case of the example policies."""
    return [
        text
        for path in sorted(POLICIES.glob("*/policy.yaml"))
        for case in load_policy(path).tests
        for text in (*(m.content for m in case.messages), case.response or "")
        if text
    ]


def copies(texts: Iterable[tuple[str, str]], turns: list[str]) -> list[tuple[str, str]]:
    """The ``(item id, test turn)`` pairs where an item's text is close to a test turn."""
    normalised = [(turn, _norm(turn)) for turn in turns]
    found = []
    for item_id, text in texts:
        matcher = difflib.SequenceMatcher(None, b=_norm(text))
        for turn, norm in normalised:
            matcher.set_seq1(norm)
            if (
                matcher.real_quick_ratio() >= CLOSE
                and matcher.quick_ratio() >= CLOSE
                and matcher.ratio() >= CLOSE
            ):
                found.append((item_id, turn))
    return found


def _norm(text: str) -> str:
    return " ".join(text.lower().split())
