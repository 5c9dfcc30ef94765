"""The unified training :class:`Example` schema, stable conversation ids and deterministic splits.

Every data set adapter (``csrm_guard.training.adapters``) turns its rows into :class:`Example` objects: a
conversation whose last message is the judged turn, the stage it is judged at, whether it is harmful, the taxonomy
categories it violates and a weak severity label per category. Conversation ids hash the normalised first user turn,
so the same prompt met in two data sets (or answered by several models) lands in one split, never two.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from csrm_guard._types import Stage
from csrm_guard.errors import DataError
from csrm_guard.policy.taxonomy import load_taxonomy

__all__ = [
    "SPLITS",
    "UNKNOWN",
    "Example",
    "Split",
    "conversation_id",
    "split_of",
    "trim_text",
]

logger = logging.getLogger(__name__)

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")
"""The split names, in output order."""

UNKNOWN = -1
"""Severity value meaning "not known for this category" (masked in the taxonomy loss)."""

# 80/10/10 by hash bucket out of 100.
_DEV_FROM, _TEST_FROM = 80, 90
_SPACE = re.compile(r"\s+")


def conversation_id(text: str) -> str:
    """Return the stable conversation id of a conversation whose first user turn is ``text``.

    The text is lower-cased and its whitespace collapsed before hashing, so trivial copies of one prompt across data
    sets share an id (and therefore a split).

    Args:
        text: The first user turn (for jailbreak rows: the underlying goal, so every attack on it stays together).

    Returns:
        ``"c"`` followed by 16 hex digits.
    """
    normalised = _SPACE.sub(" ", text.strip().lower())
    return "c" + hashlib.sha1(normalised.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


def split_of(conv_id: str) -> Split:
    """Return the split of a conversation id: a deterministic 80/10/10 hash partition."""
    bucket = int(hashlib.sha256(f"split\0{conv_id}".encode()).hexdigest()[:8], 16) % 100
    if bucket >= _TEST_FROM:
        return "test"
    return "dev" if bucket >= _DEV_FROM else "train"


def trim_text(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, keeping its start and ending at a word boundary.

    Args:
        text: The text to trim.
        max_chars: The character budget.

    Returns:
        The text, unchanged when short enough, else cut with a trailing ``" ..."``.
    """
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars * 0.6:
        cut = cut[:space]
    return cut.rstrip() + " ..."


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled conversation, the unit every adapter yields.

    Attributes:
        id: Unique row id, ``<source>:<row key>``.
        conversation_id: Stable id from :func:`conversation_id`; the split follows it.
        source: The data set folder name in ``../shared/data``.
        messages: The conversation; the last message is the judged turn (user for ``input``, assistant for
            ``output``).
        stage: Which turn is judged.
        harmful: Whether the judged turn is harmful under a policy that disallows every category.
        categories: Taxonomy category ids the judged turn violates (empty when safe, or harmful but unknown).
        topics: Taxonomy category ids the conversation is *about* (the prompt's categories), also for safe turns
            such as refusals.
        severity: Weak severity per category id (0 none .. 3 high); categories absent here are unknown.
        refusal: For output examples, whether the response refuses; ``None`` for input examples.
        lang: ISO language code guessed for the judged turn (``en``, ``fr``, ``zh``, ``other``).
        meta: The raw source labels, kept for the data card and for audits.
    """

    id: str
    conversation_id: str
    source: str
    messages: tuple[Mapping[str, str], ...]
    stage: Stage
    harmful: bool
    categories: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    severity: Mapping[str, int] = field(default_factory=dict)
    refusal: bool | None = None
    lang: str = "en"
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.messages:
            raise DataError("example has no messages", source=self.id)
        wanted = "user" if self.stage == "input" else "assistant"
        if self.messages[-1].get("role") != wanted:
            raise DataError(
                f"last message must be the judged {wanted} turn for stage {self.stage}", source=self.id
            )
        known = set(load_taxonomy().ids)
        unknown = [c for c in (*self.categories, *self.topics, *self.severity) if c not in known]
        if unknown:
            raise DataError(f"unknown taxonomy categories {sorted(set(unknown))}", source=self.id)
        if self.harmful and any(self.severity.get(c, 1) == 0 for c in self.categories):
            raise DataError("a violated category cannot have severity none", source=self.id)

    @property
    def split(self) -> Split:
        """The split this example belongs to."""
        return split_of(self.conversation_id)

    @property
    def judged(self) -> str:
        """The text of the judged turn."""
        return self.messages[-1]["content"]

    @property
    def context(self) -> tuple[Mapping[str, str], ...]:
        """The messages before the judged turn."""
        return self.messages[:-1]

    def severity_vector(self) -> dict[str, int]:
        """Severity for every taxonomy category, :data:`UNKNOWN` where not known, in taxonomy order."""
        return {cid: int(self.severity.get(cid, UNKNOWN)) for cid in load_taxonomy().ids}

    def to_json(self) -> dict[str, Any]:
        """Return the row written to ``examples.jsonl`` (with its split)."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "source": self.source,
            "split": self.split,
            "stage": self.stage,
            "messages": [dict(m) for m in self.messages],
            "harmful": self.harmful,
            "categories": list(self.categories),
            "topics": list(self.topics),
            "severity": self.severity_vector(),
            "refusal": self.refusal,
            "lang": self.lang,
            "meta": dict(sorted(self.meta.items())),
        }
