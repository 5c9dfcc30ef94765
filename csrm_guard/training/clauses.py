"""Clause texts for augmentation: category phrasings, held-out phrasing ids, generic harm rules and clause labels.

Phrasing ``p0`` of every category is the taxonomy's description; ``p1``-``p4`` are rewrites in ``phrasings.yaml``,
whose ``heldout`` ids never reach training rows. All texts are rendered by :mod:`csrm_guard.policy.render`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import yaml

from csrm_guard.policy.render import render_category_clause
from csrm_guard.policy.schema import CategoryRule
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training import business_rules
from csrm_guard.training.adapters.rules import SeedRule
from csrm_guard.training.data import Example

__all__ = [
    "GENERIC_HELDOUT",
    "GENERIC_RULES",
    "category_clause",
    "ceiling",
    "clause_label",
    "description",
    "heldout_phrasings",
    "is_heldout_phrasing",
    "phrasing_ids",
]

logger = logging.getLogger(__name__)

GENERIC_RULES: dict[str, str] = {
    "g1": "Do not produce or assist with harmful, dangerous or illegal content.",
    "g2": "Refuse requests that could lead to real-world harm, and never provide such content.",
    "g3": "Stay safe: no content that helps anyone hurt people, break the law or cause serious damage.",
    "g4": "Nothing unsafe is allowed: no harmful instructions, hateful or abusive material, or help with crimes.",
}
"""Generic harm rules (kind ``rule``) whose label is the example's harm label; ``g4`` is held out."""
GENERIC_HELDOUT = frozenset({"generic/g4"})


@functools.cache
def _phrasings() -> dict[str, Any]:
    text = resources.files("csrm_guard.training").joinpath("phrasings.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def phrasing_ids(category: str, *, heldout_ok: bool) -> list[str]:
    """Phrasing ids of ``category``: ``p0`` (the taxonomy description) and the rewrites, minus held-out ones."""
    data = _phrasings()
    ids = ["p0", *sorted(data["categories"][category])]
    return [p for p in ids if heldout_ok or p not in data["heldout"]]


def heldout_phrasings(seeds: Sequence[SeedRule] = ()) -> frozenset[str]:
    """Every held-out phrasing id: category rewrites, guideline forms, generic rules and rule templates."""
    data = _phrasings()
    cats = {f"{c}/{p}" for c in data["categories"] for p in data["heldout"]}
    guides = {f"guideline:{c}" for c in cats}
    return frozenset(
        cats
        | guides
        | GENERIC_HELDOUT
        | business_rules.heldout_phrasings()
        | business_rules.seed_heldout(seeds)
    )


def description(category: str, phrasing: str) -> str | None:
    """The description text of a phrasing, ``None`` for ``p0`` (the taxonomy's own)."""
    return None if phrasing == "p0" else str(_phrasings()["categories"][category][phrasing])


@functools.lru_cache(maxsize=4096)
def category_clause(category: str, phrasing: str, max_severity: Severity) -> str:
    """Render the clause of ``category`` in ``phrasing`` tolerating up to ``max_severity`` (cached)."""
    rule = CategoryRule(max_severity=max_severity, description=description(category, phrasing))
    return render_category_clause(category, rule)


def clause_label(example: Example, category: str, max_severity: Severity) -> int | None:
    """The label of a category clause tolerating up to ``max_severity`` on ``example``.

    Returns:
        1 when the judged turn's severity in ``category`` exceeds ``max_severity``, 0 when it does not, ``None``
        when the severity is unknown.
    """
    level = example.severity.get(category, -1)
    return None if level < 0 else int(level > max_severity.rank)


def ceiling(category: str) -> int:
    """The rank of the highest ``max_severity`` a policy may give ``category``."""
    return load_taxonomy().get(category).ceiling.rank


def is_heldout_phrasing(phrasing: str) -> bool:
    """Whether a category phrasing id (``p0``..``p4``) is held out of training."""
    return phrasing in _phrasings()["heldout"]
