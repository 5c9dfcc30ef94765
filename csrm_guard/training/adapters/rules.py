"""DynaGuard IFEval rule lists: natural-language rules (not safety) used to seed checkable custom rules.

The rows carry no transcripts or labels; only rules whose family a text check can decide are kept (no commas, all
lower case, all capitals, word limits), each tagged with its family and number so augmentation can label any judged
turn against it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from csrm_guard.training.adapters._common import read_jsonl

__all__ = ["SeedRule", "classify_rule", "load_ifeval_rules"]

logger = logging.getLogger(__name__)

_ITEM = re.compile(r"^\s*\d+\.\s*(.+)$")
_NEGATION = re.compile(r"\b(no|not|avoid|don['\u2019]t|cannot|without|never)\b", re.IGNORECASE)
_MAX_WORDS = re.compile(
    r"(?:less than|fewer than|at most|under)\s*(\d+)\s*words|(\d+)\s*words or (?:less|fewer)", re.IGNORECASE
)
_MIN_WORDS = re.compile(r"(?:at least|more than)\s*(\d+)\s*words|(\d+)\+\s*words?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SeedRule:
    """A checkable rule taken from the DynaGuard IFEval lists.

    Attributes:
        family: ``no_commas``, ``lowercase``, ``uppercase``, ``max_words`` or ``min_words``.
        text: The rule as written upstream.
        number: The word limit for the word-count families, else 0.
    """

    family: str
    text: str
    number: int = 0


def classify_rule(text: str) -> SeedRule | None:  # noqa: PLR0911 - one return per family
    """Return the checkable family of one rule line, or ``None`` when no text check decides it."""
    lower = text.lower()
    if "comma" in lower and _NEGATION.search(text) and "at least" not in lower:
        return SeedRule("no_commas", text)
    if "word" in lower and "capital" in lower:
        return None  # "at least N words in capitals": countable but rare; skipped
    if re.search(r"lower ?case|no capital letters|not use capital", lower):
        return SeedRule("lowercase", text)
    if re.search(r"all capital letters|all caps|only use capital|in capital letters", lower):
        return SeedRule("uppercase", text)
    if match := _MAX_WORDS.search(text):
        return SeedRule("max_words", text, int(match.group(1) or match.group(2)))
    if match := _MIN_WORDS.search(text):
        return SeedRule("min_words", text, int(match.group(1) or match.group(2)))
    return None


def load_ifeval_rules(folder: Path) -> list[SeedRule]:
    """Return the distinct checkable rules of ``ifeval_rules.jsonl``, sorted by text."""
    rules: dict[str, SeedRule] = {}
    for _, row in read_jsonl(folder / "ifeval_rules.jsonl"):
        for line in str(row.get("rules", "")).splitlines():
            match = _ITEM.match(line)
            if not match or len(match.group(1)) > 160:
                continue
            seed = classify_rule(match.group(1).strip())
            if seed is not None:
                rules[seed.text] = seed
    return [rules[text] for text in sorted(rules)]
