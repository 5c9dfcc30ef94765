"""Tests for the standard taxonomy data."""

from __future__ import annotations

import re

import pytest

from csrm_guard.policy import Severity, load_taxonomy
from csrm_guard.policy.taxonomy import Taxonomy

_UPSTREAM = {
    # Llama Guard 3 S1-S14: each must be merged into some category.
    **{f"LG3 S{n}": f"LG3 S{n} " for n in range(1, 15)},
    # BeaverTails' 14 categories, by a distinctive word of each label.
    "animal_abuse": "animal_abuse",
    "child_abuse": "child_abuse",
    "controversial_topics": "controversial_topics",
    "discrimination": "discrimination",
    "drug_abuse": "drug_abuse",
    "financial_crime": "financial_crime",
    "hate_speech": "hate_speech",
    "misinformation_regarding": "misinformation_regarding",
    "non_violent_unethical": "non_violent_unethical",
    "privacy_violation": "privacy_violation",
    "self_harm": "BeaverTails self_harm",
    "sexually_explicit": "sexually_explicit",
    "terrorism": "terrorism",
    "violence/aiding": "violence/aiding",
}


@pytest.fixture(name="taxonomy")
def _taxonomy() -> Taxonomy:
    return load_taxonomy()


def test_size_and_ids(taxonomy):
    """The taxonomy has 16-22 categories with unique slug ids."""
    assert 16 <= len(taxonomy.categories) <= 22
    assert len(set(taxonomy.ids)) == len(taxonomy.ids)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", category_id) for category_id in taxonomy.ids)


def test_every_category_has_a_full_rubric(taxonomy):
    """Each category has a title, a description and distinct text for low, moderate and high."""
    for category in taxonomy.categories:
        assert category.title
        assert len(category.description) > 20
        texts = [category.severity.at(level) for level in (Severity.LOW, Severity.MODERATE, Severity.HIGH)]
        assert all(texts), category.id
        assert len(set(texts)) == 3, category.id
        assert category.severity.at(Severity.NONE) == ""


def test_hard_limits(taxonomy):
    """Sexual content involving minors is a hard limit; most categories can be allowed."""
    assert taxonomy.get("sexual_minors").hard_limit
    relaxable = [category for category in taxonomy.categories if category.ceiling is Severity.HIGH]
    assert len(relaxable) >= len(taxonomy.categories) - 3


@pytest.mark.parametrize("label", sorted(_UPSTREAM))
def test_upstream_labels_are_covered(taxonomy, label):
    """Every Llama Guard 3 hazard and BeaverTails category is merged into some category's sources."""
    needle = _UPSTREAM[label]
    sources = [" ".join(category.sources) + " " for category in taxonomy.categories]
    assert any(needle in text for text in sources), label


def test_lookup_of_unknown_id_raises(taxonomy):
    """get() raises KeyError for an unknown id."""
    with pytest.raises(KeyError):
        taxonomy.get("not_a_category")


def test_cached(taxonomy):
    """The taxonomy is loaded once."""
    assert load_taxonomy() is taxonomy
