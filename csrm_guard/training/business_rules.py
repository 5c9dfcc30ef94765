"""Free-text custom rules (business rules, not safety categories) with text checks that label a judged turn.

Templates live in ``business_rules.yaml``; each family has a checker deciding whether a text breaks the rule, and
some can inject a violation (a competitor's name, a price, a link, contact details) so that one conversation yields
both labels. DynaGuard IFEval rules (:mod:`csrm_guard.training.adapters.rules`) add checkable formatting rules.
"""

from __future__ import annotations

import functools
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from csrm_guard._types import Stage
from csrm_guard.training.adapters.rules import SeedRule
from csrm_guard.training.severity import guess_language

__all__ = ["RuleCase", "families", "heldout_families", "rule_case", "seed_case"]

logger = logging.getLogger(__name__)

_PRICE = re.compile(r"[$€£]\s?\d|\b\d[\d,.]*\s?(?:dollars|euros|usd|eur|pounds|bucks)\b", re.IGNORECASE)
_LINK = re.compile(r"https?://|\bwww\.|\b[\w-]+\.(?:com|org|net|io|biz|gov|edu)\b", re.IGNORECASE)
_CONTACT = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\b\d{3}[-. ]\d{3,4}[-. ]\d{4}\b|\(\d{3}\)\s?\d{3}[-. ]\d{4}")
_APOLOGY = re.compile(r"\bsorry\b|\bapologi[sz]e", re.IGNORECASE)
_AI = re.compile(
    r"\bas an ai\b|\ban ai\b|language model|artificial intelligence|\bchatbot\b|\bai assistant\b",
    re.IGNORECASE,
)
_LIST = re.compile(r"(?:^|\n)\s*(?:[-*\u2022]|\d+[.)])\s+\S[^\n]*\n\s*(?:[-*\u2022]|\d+[.)])\s+\S")
_CODE = re.compile(
    r"```|\bdef \w+\(|\bimport \w+|#include|\bfunction\s*\w*\s*\(|console\.log|<\?php|<script|"
    r"\bpublic static void\b|\bprint\("
)
_WORD = re.compile(r"[A-Za-z]{6,}")
_STOP = frozenset(
    (
        "should",
        "before",
        "because",
        "people",
        "something",
        "through",
        "however",
        "between",
        "without",
        "really",
        "things",
        "always",
        "another",
        "little",
        "answer",
        "please",
        "thanks",
        "question",
        "provide",
        "information",
        "assistant",
        "understand",
        "important",
    )
)
_FILLER_TERMS = (
    "umbrella",
    "volcano",
    "saxophone",
    "lighthouse",
    "marathon",
    "cinnamon",
    "glacier",
    "origami",
    "trampoline",
    "submarine",
    "pineapple",
    "telescope",
    "hedgehog",
    "tornado",
    "violin",
    "kayak",
    "avocado",
    "sunflower",
    "chessboard",
    "waterfall",
)


@dataclass(frozen=True, slots=True)
class RuleCase:
    """One custom rule applied to one judged turn.

    Attributes:
        family: The rule family (``ifeval:<family>`` for DynaGuard seeds).
        template: The template id (phrasing) within the family.
        text: The rule text.
        judged: The judged turn, with an injected violation when ``injected``.
        label: 1 when the judged turn breaks the rule.
        injected: Whether a violation was inserted into the turn.
    """

    family: str
    template: str
    text: str
    judged: str
    label: int
    injected: bool = False

    @property
    def phrasing(self) -> str:
        """The phrasing id recorded on clause rows: ``rule:<family>/<template>``."""
        return f"rule:{self.family}/{self.template}"


@functools.cache
def _config() -> dict[str, Any]:
    text = resources.files("csrm_guard.training").joinpath("business_rules.yaml").read_text(encoding="utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    config["topic_rx"] = {
        name: re.compile(rf"\b(?:{words})\b", re.IGNORECASE) for name, words in config["topics"].items()
    }
    return config


def families(stage: Stage) -> list[str]:
    """Rule families that apply to judged turns of ``stage``."""
    return [name for name, fam in _config()["families"].items() if stage in fam["stages"]]


def heldout_families() -> frozenset[str]:
    """Families used only in dev/test."""
    return frozenset(_config()["heldout_families"])


def heldout_phrasings() -> frozenset[str]:
    """Every held-out rule phrasing id (``rule:<family>/<template>``), whole held-out families included."""
    config = _config()
    out = {f"rule:{name}/{tid}" for name, fam in config["families"].items() for tid in fam.get("heldout", [])}
    out |= {
        f"rule:{name}/{tid}"
        for name in config["heldout_families"]
        for tid in config["families"][name]["templates"]
    }
    return frozenset(out)


def _inject(judged: str, sentence: str, rng: random.Random) -> str:
    return f"{sentence} {judged}" if rng.random() < 0.3 else f"{judged} {sentence}"


def rule_case(family: str, judged: str, rng: random.Random, *, allow_heldout: bool) -> RuleCase:
    """Instantiate ``family`` on a judged turn, choosing a phrasing, a parameter and possibly an injection.

    Args:
        family: A family name from ``business_rules.yaml``.
        judged: The judged turn's text.
        rng: The random source (seeded per example for reproducible builds).
        allow_heldout: Whether held-out phrasings may be chosen (dev/test only).

    Returns:
        The labelled case.
    """
    config = _config()
    fam = config["families"][family]
    ids = [t for t in sorted(fam["templates"]) if allow_heldout or t not in fam.get("heldout", [])]
    template = rng.choice(ids)
    param, text, label, injected = _BUILDERS[family](judged, rng, config)
    rule_text = str(fam["templates"][template]).replace("{x}", param)
    return RuleCase(family, template, rule_text[0].upper() + rule_text[1:], text, label, injected)


_Built = tuple[str, str, int, bool]


def _mention_term(judged: str, rng: random.Random, _: dict[str, Any]) -> _Built:
    words = sorted({w.lower() for w in _WORD.findall(judged)} - _STOP)
    if words and rng.random() < 0.5:
        return rng.choice(words), judged, 1, False
    term = rng.choice([t for t in _FILLER_TERMS if t not in judged.lower()])
    return term, judged, 0, False


def _competitor(judged: str, rng: random.Random, config: dict[str, Any]) -> _Built:
    brand = rng.choice(config["competitors"])
    if rng.random() < 0.5:
        return brand, _inject(judged, f"You could also try {brand} for this.", rng), 1, True
    return brand, judged, int(brand.lower() in judged.lower()), False


def _injecting(
    pattern: re.Pattern[str], make: Callable[[random.Random, dict[str, Any]], str]
) -> Callable[[str, random.Random, dict[str, Any]], _Built]:
    def build(judged: str, rng: random.Random, config: dict[str, Any]) -> _Built:
        if not pattern.search(judged) and rng.random() < 0.5:
            return "", _inject(judged, make(rng, config), rng), 1, True
        return "", judged, int(bool(pattern.search(judged))), False

    return build


def _natural(check: Callable[[str], bool]) -> Callable[[str, random.Random, dict[str, Any]], _Built]:
    return lambda judged, _rng, _config: ("", judged, int(check(judged)), False)


def _topic(judged: str, rng: random.Random, config: dict[str, Any]) -> _Built:
    matching = [name for name, rx in config["topic_rx"].items() if rx.search(judged)]
    names = sorted(config["topic_rx"])
    name = rng.choice(matching) if matching and rng.random() < 0.5 else rng.choice(names)
    return name, judged, int(name in matching), False


def _max_words(judged: str, rng: random.Random, _: dict[str, Any]) -> _Built:
    count = len(judged.split())
    limit = max(10, 5 * round((count + rng.randint(-40, 40)) / 5))
    return str(limit), judged, int(count >= limit), False


_BUILDERS: dict[str, Callable[[str, random.Random, dict[str, Any]], _Built]] = {
    "mention_term": _mention_term,
    "competitor": _competitor,
    "price": _injecting(_PRICE, lambda rng, _: f"It costs about ${rng.randint(5, 900)}."),
    "links": _injecting(_LINK, lambda rng, c: f"More details at https://www.{rng.choice(c['sites'])}/info."),
    "contact_details": _injecting(
        _CONTACT,
        lambda rng, c: f"Write to help@{rng.choice(c['sites'])} or call 555-013-{rng.randint(1000, 9999)}.",
    ),
    "english_only": _natural(lambda text: guess_language(text) != "en"),
    "no_apology": _natural(lambda text: bool(_APOLOGY.search(text))),
    "no_ai_mention": _natural(lambda text: bool(_AI.search(text))),
    "topic": _topic,
    "no_lists": _natural(lambda text: bool(_LIST.search(text))),
    "exclamation": _natural(lambda text: "!" in text),
    "no_code": _natural(lambda text: bool(_CODE.search(text))),
    "max_words": _max_words,
}

_SEED_CHECKS: dict[str, Callable[[str, int], bool]] = {
    "no_commas": lambda text, _: "," in text,
    "lowercase": lambda text, _: any(ch.isupper() for ch in text),
    "uppercase": lambda text, _: any(ch.islower() for ch in text),
    "max_words": lambda text, n: len(text.split()) >= n,
    "min_words": lambda text, n: len(text.split()) < n,
}


def seed_case(seeds: Sequence[SeedRule], judged: str, rng: random.Random, *, allow_heldout: bool) -> RuleCase:
    """Apply a DynaGuard IFEval seed rule to a judged turn (every fifth seed is held out)."""
    indices = [i for i in range(len(seeds)) if allow_heldout or i % 5]
    index = rng.choice(indices)
    seed = seeds[index]
    label = int(_SEED_CHECKS[seed.family](judged, seed.number))
    return RuleCase(f"ifeval:{seed.family}", f"s{index}", seed.text, judged, label)


def seed_heldout(seeds: Sequence[SeedRule]) -> frozenset[str]:
    """Held-out phrasing ids among the IFEval seeds."""
    return frozenset(f"rule:ifeval:{seed.family}/s{i}" for i, seed in enumerate(seeds) if i % 5 == 0)
