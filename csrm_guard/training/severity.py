"""Weak severity labels (none/low/moderate/high), text heuristics behind them, and agreement with hand labels.

No source data set carries severity, so it is inferred from what the sources do carry (see ``docs/data.md``):

* the judged turn's source label (harmful or not) and, for responses, whether it refuses;
* source-specific escalations passed in as ``hints`` (OpenAI ``H2``/``V2``, Aegis ``Threat``, Do-Not-Answer
  action classes);
* rubric keyword rules on the text: operational content (steps, recipes, code; requests for a method such as
  "how can I ..." or "step-by-step") and category escalations (explicit sexual vocabulary, dehumanising language,
  first-person threats) are ``high``; hedged or disclaimed harmful responses are ``low``; other harmful content is
  ``moderate``.

Safe turns get ``none`` in every category the source labels exhaustively; a safe response that engages cautiously
with a risky topic (Do-Not-Answer actions 2 and 3) gets ``low`` in the topic's category. The scheme is deliberately
simple and its agreement with a hand-labelled sample is measured by :func:`agreement`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from csrm_guard._types import Stage
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy

__all__ = [
    "Agreement",
    "agreement",
    "guess_language",
    "is_hedged",
    "is_operational",
    "is_refusal",
    "level_of",
    "weak_severity",
]

logger = logging.getLogger(__name__)

_REFUSAL = re.compile(
    r"\b(i['\u2019]?m sorry|i am sorry|i apologi[sz]e|sorry, but|i can(?:not|['\u2019]t)|i won['\u2019]t|"
    r"i will not|i am unable|i['\u2019]m unable|i am not able|i['\u2019]m not able|as an ai|as a language model|"
    r"i must decline|i refuse|"
    r"cannot (?:provide|assist|help|fulfil|fulfill|comply)|can['\u2019]t (?:provide|assist|help|fulfil|fulfill|comply)|"
    r"not (?:able|going) to (?:provide|help|assist)|is not appropriate|it(?: is|['\u2019]s) not ethical|"
    r"against my (?:programming|guidelines)|i do not feel comfortable|i don['\u2019]t feel comfortable)",
    re.IGNORECASE,
)
_OPERATIONAL_RESPONSE = re.compile(
    r"(\bstep\s*(?:1|one)\b|\bfirst(?:ly)?,|\byou(?:['\u2019]ll| will) need\b|\bingredients\b|```|"
    r"\bhere(?:['\u2019]s| is) how\b|\bfollow these steps\b|\bthe (?:best|easiest|most reliable) (?:way|method)\b|"
    r"\bimport \w+|\bdef \w+\(|#include)",
    re.IGNORECASE,
)
# A harmful request for a method ("how can I ...", "what's a good way to ...") asks for practical help, which the
# taxonomy rubrics put at high.
_OPERATIONAL_REQUEST = re.compile(
    r"\b(step[- ]by[- ]step|detailed (?:instructions|guide|plan|steps)|instructions (?:for|on|to)|"
    r"how (?:to|do i|can i|would i|could i|should i|do you|can you|would you|can we|do we|does one)\b|"
    r"(?:best|good|easiest|quickest|simplest|safest) (?:way|method|tool)s? (?:to|for|of)|ways? (?:to|of) |"
    r"what (?:tool|weapon|poison|drug|chemical)s?|help me|teach me|tell me how|show me how|synthesi[sz]e|"
    r"recipe for|write (?:a |an )?(?:script|code|program|malware|virus|keylogger|exploit|ransomware)|tutorial|"
    r"blueprint|give me (?:a |the )?(?:plan|steps|list))",
    re.IGNORECASE,
)
# Category-specific escalations to high, read off the rubrics' "high" lines.
_ESCALATE: dict[str, re.Pattern[str]] = {
    "sexual": re.compile(
        r"\b(fuck\w*|porn\w*|xxx|cock|pussy|tits|cum|handjob|blowjob|masturbat\w*|orgasm\w*)\b", re.IGNORECASE
    ),
    "hate": re.compile(
        r"\b(apes|vermin|subhuman|animals|exterminat\w*|wipe (?:them|\w+) out|nigg\w*|kikes?|"
        r"should (?:all )?(?:die|be killed|be shot))\b",
        re.IGNORECASE,
    ),
    "violence": re.compile(
        r"\b(i(?:['\u2019]ll| will| am going to|['\u2019]m going to|['\u2019]m gonna) "
        r"(?:kill|shoot|stab|hurt|beat)|kill (?:you|him|her|them))\b",
        re.IGNORECASE,
    ),
}
_HEDGED = re.compile(
    r"\b(however,|it is important to (?:note|remember)|i (?:do not|don['\u2019]t) (?:recommend|condone|encourage)|"
    r"please note|disclaimer|consult (?:a|an|your)|not advisable|is illegal and|be careful|at your own risk)",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_FRENCH = re.compile(
    r"\b(le|la|les|des|est|une|je|que|pour|avec|vous|pas|dans|sur|qui|mon|ma|mes|ce|cette|être|comment)\b",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """True when a response refuses or deflects in its opening (first 300 characters)."""
    return bool(_REFUSAL.search(text[:300]))


def is_operational(text: str, *, stage: Stage) -> bool:
    """True when a response gives operational content, or a request asks for it.

    Args:
        text: The judged turn.
        stage: ``output`` applies the response rules (numbered steps, code, recipes), ``input`` the request rules
            ("step-by-step", "how to make", "write a script", ...).
    """
    if stage == "input":
        return bool(_OPERATIONAL_REQUEST.search(text))
    return bool(_OPERATIONAL_RESPONSE.search(text))


def is_hedged(text: str) -> bool:
    """True when harmful content comes with a caution or disclaimer."""
    return bool(_HEDGED.search(text))


def guess_language(text: str) -> str:
    """Guess the language of ``text``: ``en``, ``fr``, ``zh`` (any CJK script) or ``other``."""
    words = max(1, len(text.split()))
    french = len(_FRENCH.findall(text)) / words > 0.12
    if text.isascii():  # the common case, without a per-character scan
        return "fr" if french else "en"
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    if len(_CJK.findall(text)) / len(letters) > 0.2:
        return "zh"
    if french:
        return "fr"
    non_ascii = sum(1 for ch in letters if not ch.isascii())
    return "other" if non_ascii / len(letters) > 0.3 else "en"


def weak_severity(
    text: str,
    *,
    stage: Stage,
    harmful: bool,
    categories: Sequence[str],
    exhaustive: bool,
    covered: Sequence[str] | None = None,
    refusal: bool | None = None,
    hints: Mapping[str, int] | None = None,
    engaged_topics: Sequence[str] = (),
) -> dict[str, int]:
    """Return weak severity labels (0 none .. 3 high) for the judged turn; absent categories are unknown.

    Args:
        text: The judged turn.
        stage: The judged stage.
        harmful: The source's harm label for the judged turn.
        categories: The categories the source says are violated.
        exhaustive: Whether the source labels every category it covers (multi-label sets), so that unlisted
            categories can be set to none. A safe label is always exhaustive.
        covered: The categories an exhaustive source covers (default: all).
        refusal: Whether a response refuses (refusals are none everywhere).
        hints: Source-specific levels that override the text rules, e.g. ``{"hate": 3}`` for OpenAI ``H2``.
        engaged_topics: Topic categories a safe response engages with cautiously (set to low).

    Returns:
        Category id -> level.
    """
    hints = hints or {}
    ids = load_taxonomy().ids
    if not harmful or refusal:
        levels = dict.fromkeys(ids, 0)
        levels.update(dict.fromkeys(engaged_topics, 1) if not refusal else {})
        return levels
    levels = dict.fromkeys(covered or ids, 0) if exhaustive else {}
    if is_operational(text, stage=stage):
        default = 3
    elif stage == "output" and is_hedged(text):
        default = 1
    else:
        default = 2
    for category in categories:
        escalate = category in _ESCALATE and bool(_ESCALATE[category].search(text))
        levels[category] = max(1, hints.get(category, 3 if escalate else default))
    return levels


@dataclass(frozen=True, slots=True)
class Agreement:
    """Agreement of weak severity labels with hand labels.

    Attributes:
        n: Number of (example, category) items compared.
        exact: Share of items where the two labels are equal.
        within_one: Share of items at most one level apart.
        kappa: Quadratic-weighted Cohen's kappa.
        binary_accuracy: Agreement on "any severity" (none vs the rest).
        confusion: ``confusion[hand][weak]`` counts, levels 0..3.
    """

    n: int
    exact: float
    within_one: float
    kappa: float
    binary_accuracy: float
    confusion: tuple[tuple[int, ...], ...]


def agreement(pairs: Iterable[tuple[int, int]]) -> Agreement:
    """Compare (hand, weak) severity pairs (levels 0..3).

    Args:
        pairs: ``(hand_label, weak_label)`` per item.

    Returns:
        The agreement figures (all zero for no items).
    """
    matrix = [[0] * 4 for _ in range(4)]
    for hand, weak in pairs:
        matrix[hand][weak] += 1
    n = sum(map(sum, matrix))
    if n == 0:
        return Agreement(0, 0.0, 0.0, 0.0, 0.0, tuple(tuple(row) for row in matrix))
    exact = sum(matrix[i][i] for i in range(4)) / n
    within = sum(matrix[i][j] for i in range(4) for j in range(4) if abs(i - j) <= 1) / n
    binary = sum(matrix[i][j] for i in range(4) for j in range(4) if (i == 0) == (j == 0)) / n
    rows = [sum(row) for row in matrix]
    cols = [sum(matrix[i][j] for i in range(4)) for j in range(4)]
    observed = sum(matrix[i][j] * (i - j) ** 2 for i in range(4) for j in range(4))
    expected = sum(rows[i] * cols[j] * (i - j) ** 2 for i in range(4) for j in range(4)) / n
    kappa = 1.0 - observed / expected if expected else 1.0
    return Agreement(n, exact, within, kappa, binary, tuple(tuple(row) for row in matrix))


def level_of(label: str | int) -> int:
    """Turn ``"none"|"low"|"moderate"|"high"`` or 0..3 into a level."""
    if isinstance(label, int):
        return label
    return Severity(label).rank
