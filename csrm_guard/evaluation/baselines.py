"""Baselines that make the value of configurability visible.

* :class:`KeywordBaseline`: a policy-blind keyword/regex filter over the judged turn, the kind of block list many
  deployments start with. Its score is ``hits / (hits + 1)`` so that AUPRC can rank; it flags at one hit.
* The *unconditioned classifier* is the same MiniLM encoder fine-tuned on the same rows with the clause removed
  (``unconditioned: true`` in the training config), exported as its own bundle and run by
  :class:`~csrm_guard.evaluation.runner.BundleRunner` with ``unconditioned=True``: it sees the transcript only, so
  it cannot tell a policy that allows something from one that forbids it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np

from csrm_guard.evaluation.runner import Scored

__all__ = ["KEYWORDS", "KeywordBaseline", "judged_turn"]

KEYWORDS: tuple[str, ...] = (
    r"\bkill(?:ing|ed)?\b",
    r"\bmurder",
    r"\bbomb",
    r"\bexplosive",
    r"\bgun\b",
    r"\bfirearm",
    r"\bweapon",
    r"\bpoison",
    r"\bnerve agent",
    r"\banthrax",
    r"\bterroris",
    r"\bextremis",
    r"\bnazi",
    r"\bslur",
    r"\bhate\b",
    r"\bretard",
    r"\bhack(?:ing|er)?\b",
    r"\bmalware",
    r"\bransomware",
    r"\bphish",
    r"\bexploit",
    r"\bsteal",
    r"\bfraud",
    r"\blaunder",
    r"\bcounterfeit",
    r"\bdrugs?\b",
    r"\bcocaine",
    r"\bheroin",
    r"\bmeth\b",
    r"\bfentanyl",
    r"\bsuicide",
    r"\bself[- ]harm",
    r"\bcut myself",
    r"\bsex(?:ual)?\b",
    r"\bporn",
    r"\bnude",
    r"\bchild\b.*\b(?:sex|nude)",
    r"\brape",
    r"\bharass",
    r"\bstalk",
    r"\bdox",
    r"\bsocial security number",
    r"\bpassword",
    r"\bfuck",
    r"\bshit\b",
    r"\bbitch",
    r"\bviolen",
    r"\battack",
    r"\bassault",
    r"\btorture",
)
"""The block list: common harm terms across the taxonomy's categories (case-insensitive)."""

_JUDGED = "[judged]"


def judged_turn(transcript: str) -> str:
    """The judged turn of a rendered transcript (the text after the ``[judged]`` marker, else all of it)."""
    position = transcript.rfind(_JUDGED)
    return transcript[position + len(_JUDGED) :] if position >= 0 else transcript


class KeywordBaseline:
    """Policy-blind keyword filter: flags the judged turn when any block-list pattern matches."""

    name = "keyword filter"

    def __init__(self, patterns: Sequence[str] = KEYWORDS) -> None:
        self.patterns = [re.compile(pattern, re.IGNORECASE) for pattern in patterns]

    def hits(self, text: str) -> int:
        """Number of distinct patterns that match ``text``."""
        return sum(1 for pattern in self.patterns if pattern.search(text))

    def score(self, transcripts: Sequence[str]) -> Scored:
        """Scores ``hits / (hits + 1)`` and the flag threshold 0.5 (one hit) per transcript."""
        start = time.perf_counter()
        hits = np.array([self.hits(judged_turn(text)) for text in transcripts], dtype=np.float64)
        per_row = (time.perf_counter() - start) * 1000.0 / max(1, len(hits))
        return Scored(hits / (hits + 1.0), np.full(len(hits), 0.5), np.full(len(hits), per_row))
