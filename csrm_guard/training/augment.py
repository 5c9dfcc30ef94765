"""Configuration augmentation (CCA) and strictness augmentation (SA), rendered through ``csrm_guard.policy.render``.

From one labelled :class:`~csrm_guard.training.data.Example` the :class:`Augmenter` derives:

* clause rows ``(clause, transcript, label)``: the violated category disallowed (1); the same category allowed up to
  its severity or beyond (0) or capped below its severity (1); irrelevant categories disallowed (0); the
  conversation's topic disallowed when the judged turn is safe, e.g. a refusal (0); guideline-style clauses; a
  generic harm rule (the example's harm label); and custom business rules checked on the text;
* strictness pairs ``(stricter, laxer)`` on one transcript, kept only where the labels guarantee the order
  (the judged turn violates the stricter clause and not the laxer one);
* a taxonomy row with the weak severity of every category (-1 unknown).

A clause for category ``c`` with ``max_severity`` s is violated iff the judged turn's severity in ``c`` exceeds s.
Category descriptions come in several phrasings (``phrasings.yaml``); held-out phrasings and rule templates are
used only when ``heldout_ok`` (dev/test), never in training rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from csrm_guard.policy.render import (
    render_guideline_clause,
    render_rule_clause,
    render_transcript,
)
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training import business_rules
from csrm_guard.training.adapters._common import keyword_match
from csrm_guard.training.adapters.rules import SeedRule
from csrm_guard.training.clauses import (
    GENERIC_HELDOUT,
    GENERIC_RULES,
    category_clause,
    ceiling,
    clause_label,
    description,
    heldout_phrasings,
    is_heldout_phrasing,
    phrasing_ids,
)
from csrm_guard.training.data import Example

__all__ = [
    "GENERIC_RULES",
    "Augmenter",
    "category_clause",
    "clause_label",
    "heldout_phrasings",
    "phrasing_ids",
]

logger = logging.getLogger(__name__)


class Augmenter:
    """Turns examples into clause rows, strictness pairs and taxonomy rows (see the module docstring).

    Args:
        seeds: DynaGuard IFEval rules usable on responses.
        seed: The build seed; every example's choices come from a generator seeded with it and the example id.
    """

    def __init__(self, seeds: Sequence[SeedRule] = (), *, seed: int = 13) -> None:
        self._seeds = [
            s
            for s in seeds
            if s.family in ("no_commas", "lowercase", "uppercase")
            or (s.family == "max_words" and s.number <= 200)
        ]
        self._seed = seed

    def rng(self, example: Example, purpose: str) -> random.Random:
        """A generator seeded by the build seed, the example id and ``purpose``."""
        return random.Random(f"{self._seed}\0{example.id}\0{purpose}")  # noqa: S311 - data sampling, not crypto

    def clause_rows(
        self, example: Example, *, heldout_ok: bool, limit: int, force_heldout: bool = False
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` clause rows for ``example``, the label-defining row first.

        Args:
            example: The labelled conversation.
            heldout_ok: Whether held-out phrasings and rule templates may be used (dev/test).
            limit: Maximum rows.
            force_heldout: Use only held-out phrasings (for the configurable-dev benchmark).
        """
        rng = self.rng(example, "clauses" + ("-heldout" if force_heldout else ""))
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for maker in self._makers(example, rng):
            if len(rows) >= limit:
                break
            row = maker(example, rng, heldout_ok, force_heldout)
            if row is not None and (row["clause"], row["transcript"]) not in seen:
                seen.add((row["clause"], row["transcript"]))
                rows.append(row)
        for n, row in enumerate(rows):
            row["id"] = f"{example.id}#{'h' if force_heldout else 'c'}{n}"
        return rows

    def _makers(self, example: Example, rng: random.Random) -> list[Any]:
        # The first row defines the example's contribution when only one row is kept, so for safe examples it
        # is drawn among every kind of negative (a fixed kind would teach the model "this clause kind is safe").
        if not example.harmful:
            core = [self._safe_topic, self._irrelevant, self._generic, self._rule]
            rng.shuffle(core)
            if example.refusal and rng.random() < 0.5:
                # Refusals of harmful requests are the negatives a guard most often gets wrong: weight them up.
                core.insert(0, self._safe_topic)
        else:
            core = [self._violated] if example.categories else [self._generic]
        rest = [
            self._allowed,
            self._below,
            self._irrelevant,
            self._guideline,
            self._generic,
            self._rule,
            self._rule,
            self._violated,
            self._irrelevant,
            self._safe_topic,
        ]
        rng.shuffle(rest)
        return core + rest

    def _pick(self, category: str, rng: random.Random, heldout_ok: bool, force: bool) -> str:
        ids = phrasing_ids(category, heldout_ok=heldout_ok or force)
        if force:
            ids = [p for p in ids if is_heldout_phrasing(p)]
        elif heldout_ok and rng.random() < 0.5:
            ids = [p for p in ids if is_heldout_phrasing(p)] or ids
        return rng.choice(ids)

    def _row(
        self,
        example: Example,
        clause: str,
        kind: str,
        label: int,
        *,
        category: str | None,
        phrasing: str,
        augmentation: str,
        transcript: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": "",
            "conversation_id": example.conversation_id,
            "source": example.source,
            "stage": example.stage,
            "clause": clause,
            "clause_kind": kind,
            "category": category,
            "transcript": transcript or _transcript(example),
            "label": label,
            "phrasing": phrasing,
            "augmentation": augmentation,
        }

    def _category_row(  # noqa: PLR0917 - private helper called positionally by every row maker
        self,
        example: Example,
        rng: random.Random,
        category: str,
        max_rank: int,
        augmentation: str,
        heldout_ok: bool,
        force: bool,
    ) -> dict[str, Any] | None:
        label = clause_label(example, category, Severity.from_rank(max_rank))
        if label is None or max_rank > ceiling(category):
            return None
        phrasing = self._pick(category, rng, heldout_ok, force)
        clause = category_clause(category, phrasing, Severity.from_rank(max_rank))
        return self._row(
            example,
            clause,
            "category",
            label,
            category=category,
            phrasing=f"{category}/{phrasing}",
            augmentation=augmentation,
        )

    def _violated(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        if not ex.categories:
            return None
        return self._category_row(ex, rng, rng.choice(ex.categories), 0, "cca:violated", ok, force)

    def _allowed(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        known = [c for c in (ex.categories or ex.topics) if ex.severity.get(c, -1) >= 0]
        if not known:
            return None
        category = rng.choice(known)
        low = max(ex.severity[category], 1)
        if low > ceiling(category):
            return None
        return self._category_row(
            ex, rng, category, rng.randint(low, ceiling(category)), "cca:allowed", ok, force
        )

    def _below(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        known = [c for c in ex.categories if ex.severity.get(c, 0) >= 2]
        if not known:
            return None
        category = rng.choice(known)
        return self._category_row(
            ex, rng, category, rng.randint(1, ex.severity[category] - 1), "cca:above_threshold", ok, force
        )

    def _safe_topic(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        if not ex.topics or ex.harmful:
            return None
        kind = "cca:refusal" if ex.refusal else "cca:safe_topic"
        category = rng.choice(ex.topics)
        rank = 0 if rng.random() < 0.5 else rng.randint(0, ceiling(category))
        return self._category_row(ex, rng, category, rank, kind, ok, force)

    def _irrelevant(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        candidates = _irrelevant_categories(ex)
        if not candidates:
            return None
        category = rng.choice(candidates)
        severity = dict(ex.severity)
        severity[category] = 0
        # Any tolerance level: a ladder clause ("Not allowed above low severity: ...") about an unrelated
        # category is not violated either, and without these rows the ladder form itself reads as "violation".
        rank = rng.randint(0, ceiling(category))
        return self._category_row(
            _with_severity(ex, severity), rng, category, rank, "cca:irrelevant", ok, force
        )

    def _guideline(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        known = [c for c in (*ex.categories, *ex.topics) if ex.severity.get(c, -1) >= 0]
        unrelated = _irrelevant_categories(ex)
        if unrelated and (not known or rng.random() < 0.5):
            # Guideline negatives: without them every guideline clause reads as "violation".
            category = rng.choice(unrelated)
            ex = _with_severity(ex, {**ex.severity, category: 0})
        elif known:
            category = rng.choice(known)
        else:
            return None
        phrasing = self._pick(category, rng, ok, force)
        text = description(category, phrasing) or load_taxonomy().get(category).description
        title = load_taxonomy().get(category).title
        clause = render_guideline_clause(f"{title} is not permitted. {text}")
        return self._row(
            ex,
            clause,
            "guideline",
            int(ex.severity[category] > 0),
            category=category,
            phrasing=f"guideline:{category}/{phrasing}",
            augmentation="cca:guideline",
        )

    def _generic(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        ids = sorted(GENERIC_RULES)
        if force:
            ids = [i for i in ids if f"generic/{i}" in GENERIC_HELDOUT]
        elif not ok:
            ids = [i for i in ids if f"generic/{i}" not in GENERIC_HELDOUT]
        rule = rng.choice(ids)
        return self._row(
            ex,
            render_rule_clause(GENERIC_RULES[rule]),
            "rule",
            int(ex.harmful),
            category=None,
            phrasing=f"generic/{rule}",
            augmentation="cca:generic",
        )

    def _rule(self, ex: Example, rng: random.Random, ok: bool, force: bool) -> dict[str, Any] | None:
        names = [
            f
            for f in business_rules.families(ex.stage)
            if ok or force or f not in business_rules.heldout_families()
        ]
        if force:
            names = [f for f in names if f in business_rules.heldout_families()] or names
        if ex.stage == "output" and self._seeds and rng.random() < 0.2:
            case = business_rules.seed_case(self._seeds, ex.judged, rng, allow_heldout=ok or force)
        else:
            case = business_rules.rule_case(rng.choice(names), ex.judged, rng, allow_heldout=ok or force)
        transcript = _transcript(ex, case.judged) if case.injected else None
        return self._row(
            ex,
            render_rule_clause(case.text),
            "rule",
            case.label,
            category=None,
            phrasing=case.phrasing,
            augmentation="cca:rule_injected" if case.injected else "cca:rule",
            transcript=transcript,
        )

    def pair_row(self, example: Example, *, heldout_ok: bool) -> dict[str, Any] | None:
        """Return one strictness pair whose order the labels guarantee, or ``None``.

        The judged turn has severity v >= 1 in category c; the stricter clause tolerates less than v (violated),
        the laxer one at least v (not violated), both in the same phrasing.
        """
        rng = self.rng(example, "pairs")
        known = [
            c
            for c in sorted(example.severity)
            if example.severity[c] >= 1 and example.severity[c] <= ceiling(c)
        ]
        if not known:
            return None
        category = rng.choice(known)
        level = example.severity[category]
        phrasing = self._pick(category, rng, heldout_ok, False)
        stricter = category_clause(category, phrasing, Severity.from_rank(rng.randint(0, level - 1)))
        laxer = category_clause(category, phrasing, Severity.from_rank(rng.randint(level, ceiling(category))))
        return {
            "id": f"{example.id}#p0",
            "conversation_id": example.conversation_id,
            "source": example.source,
            "transcript": _transcript(example),
            "stricter": stricter,
            "laxer": laxer,
            "category": category,
        }

    def taxonomy_row(self, example: Example, *, negatives: bool = False) -> dict[str, Any] | None:
        """Return the taxonomy (severity head) row, or ``None`` when no category's severity is known.

        Args:
            example: The labelled conversation.
            negatives: For a harmful turn, label the categories it is plainly not about as severity 0.
        """
        vector = example.severity_vector()
        if all(v < 0 for v in vector.values()):
            return None
        if negatives and example.harmful:
            # Single-label sources leave every other category unknown, so the severity head would never learn
            # "harmful, but not this category": categories the conversation is not about and whose keyword rule
            # does not fire are labelled severity 0 (the same weak negatives the irrelevant clause rows use).
            for category in _irrelevant_categories(example):
                vector[category] = max(vector[category], 0)
        return {
            "id": f"{example.id}#t0",
            "conversation_id": example.conversation_id,
            "source": example.source,
            "stage": example.stage,
            "transcript": _transcript(example),
            "severity": vector,
        }


def _transcript(example: Example, judged: str | None = None) -> str:
    messages = list(example.messages)
    if judged is not None:
        messages[-1] = {**messages[-1], "content": judged}
    return render_transcript(messages, stage=example.stage)


def _irrelevant_categories(example: Example) -> list[str]:
    involved = set(example.categories) | set(example.topics)
    zeros = [c for c in load_taxonomy().ids if example.severity.get(c, -1) == 0 and c not in involved]
    if zeros:
        return zeros
    # Single-label sources: only categories whose keyword rule does not fire on the conversation at all.
    text = " ".join(m["content"] for m in example.messages)
    return [c for c in load_taxonomy().ids if c not in involved and keyword_match(c, text) is False]


def _with_severity(example: Example, severity: dict[str, int]) -> Example:
    return Example(
        example.id,
        example.conversation_id,
        example.source,
        example.messages,
        example.stage,
        example.harmful,
        example.categories,
        example.topics,
        severity,
        example.refusal,
        example.lang,
        example.meta,
    )
