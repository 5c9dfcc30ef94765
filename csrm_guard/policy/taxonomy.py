"""The standard harm taxonomy, loaded from ``taxonomy.yaml`` into typed objects.

The categories are data: no code branches on a category id. ``ceiling`` caps what a policy may allow; a
ceiling of ``none`` makes the category a hard limit.
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict

from csrm_guard.policy.severity import Severity

__all__ = ["Category", "SeverityRubric", "Taxonomy", "load_taxonomy"]


class SeverityRubric(BaseModel):
    """What content sits at each severity level of one category."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: str
    moderate: str
    high: str

    def at(self, level: Severity) -> str:
        """Return the rubric text for ``level`` (empty for ``none``)."""
        return "" if level is Severity.NONE else str(getattr(self, level.value))


class Category(BaseModel):
    """One standard harm category.

    Attributes:
        id: The key policies use under ``categories:``.
        title: A human-readable name.
        description: What the category covers; the model reads it unless a policy overrides it.
        severity: The rubric for low, moderate and high.
        ceiling: The highest ``max_severity`` any policy may allow (``none`` = hard limit).
        sources: Upstream labels merged into this category.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str
    description: str
    severity: SeverityRubric
    ceiling: Severity = Severity.HIGH
    sources: tuple[str, ...] = ()

    @property
    def hard_limit(self) -> bool:
        """True when no policy may allow any content of this category."""
        return self.ceiling is Severity.NONE


class Taxonomy(BaseModel):
    """The versioned list of standard categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    categories: tuple[Category, ...]

    @functools.cached_property
    def by_id(self) -> dict[str, Category]:
        """Categories keyed by id."""
        return {category.id: category for category in self.categories}

    @property
    def ids(self) -> tuple[str, ...]:
        """Category ids in taxonomy order (the order of the model's severity head)."""
        return tuple(category.id for category in self.categories)

    def get(self, category_id: str) -> Category:
        """Return the category with ``category_id``; raises ``KeyError`` when unknown."""
        return self.by_id[category_id]


@functools.cache
def load_taxonomy() -> Taxonomy:
    """Load the taxonomy shipped with the package (cached).

    Returns:
        The standard taxonomy.
    """
    text = resources.files("csrm_guard.policy").joinpath("taxonomy.yaml").read_text(encoding="utf-8")
    return Taxonomy.model_validate(yaml.safe_load(text))
