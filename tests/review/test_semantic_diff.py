from __future__ import annotations

import pytest

from csrm_guard.policy import CategoryRule, Policy, Rule
from csrm_guard.review.semantic import changed_clauses, semantic_diff


def _paths(old: Policy, new: Policy) -> list[tuple[str, str, str]]:
    return [(c.path, c.kind, c.direction) for c in semantic_diff(old, new)]


class TestCategories:
    @pytest.mark.parametrize(
        ("before", "after", "direction"),
        [("low", "none", "stricter"), ("none", "moderate", "laxer"), ("moderate", "low", "stricter")],
    )
    def test_severity_change_has_a_direction(self, before: str, after: str, direction: str):
        """Lowering a category's max_severity is stricter, raising it laxer."""
        old = Policy(name="p", categories={"violence": CategoryRule(max_severity=before)})
        new = Policy(name="p", categories={"violence": CategoryRule(max_severity=after)})
        (change,) = semantic_diff(old, new)
        assert (change.path, change.old, change.new, change.direction) == (
            "categories.violence.max_severity",
            before,
            after,
            direction,
        )

    def test_added_and_removed_categories(self):
        """A category newly listed is checked (stricter); one dropped is not (laxer)."""
        old = Policy(name="p", categories={"violence": CategoryRule()})
        new = Policy(name="p", categories={"hate": CategoryRule()})
        assert _paths(old, new) == [
            ("categories.violence", "removed", "laxer"),
            ("categories.hate", "added", "stricter"),
        ]

    def test_dropping_a_hard_limit_has_no_direction(self):
        """Hard limits apply even when omitted, so removing one is not 'laxer'."""
        old = Policy(name="p", categories={"sexual_minors": CategoryRule()})
        assert _paths(old, Policy(name="p")) == [("categories.sexual_minors", "removed", "")]

    def test_allowed_toggle(self):
        """Allowing a category entirely is laxer."""
        old = Policy(name="p", categories={"profanity": CategoryRule(max_severity="low")})
        new = Policy(name="p", categories={"profanity": CategoryRule(allowed=True, max_severity="low")})
        assert _paths(old, new) == [("categories.profanity.allowed", "changed", "laxer")]

    def test_description_rewrite_has_no_direction(self):
        """A rewritten description changes meaning in no measurable direction."""
        old = Policy(name="p", categories={"privacy": CategoryRule()})
        new = Policy(name="p", categories={"privacy": CategoryRule(description="Home addresses of staff.")})
        assert _paths(old, new) == [("categories.privacy.description", "changed", "")]


class TestRulesAndStages:
    def test_rules_by_id(self):
        """Rules are matched by id: text and action changes are per field, new ids are additions."""
        old = Policy(name="p", rules=[Rule(id="a", text="No A."), Rule(id="b", text="No B.")])
        new = Policy(
            name="p", rules=[Rule(id="a", text="No A at all.", action="block"), Rule(id="c", text="No C.")]
        )
        assert _paths(old, new) == [
            ("rules.a.text", "changed", ""),
            ("rules.a.action", "changed", ""),
            ("rules.b", "removed", "laxer"),
            ("rules.c", "added", "stricter"),
        ]

    def test_stage_settings(self):
        """Threshold, action and fail-mode changes say which way they push enforcement."""
        old = Policy(name="p", output={"threshold": 0.5, "action": "monitor", "fail": "open"})
        new = Policy(name="p", output={"threshold": 0.4, "action": "block", "fail": "closed"})
        assert _paths(old, new) == [
            ("output.action", "changed", "stricter"),
            ("output.threshold", "changed", "stricter"),
            ("output.fail", "changed", "stricter"),
        ]

    def test_metadata_and_guidelines(self):
        """Version bumps and guideline edits are listed; tests are ignored."""
        old = Policy(name="p", version="1", guidelines="Be nice.")
        new = Policy(
            name="p",
            version="2",
            guidelines="Be kind.",
            tests=[{"name": "t", "messages": [{"role": "user", "content": "x"}], "expect": "allow"}],
        )
        assert _paths(old, new) == [("version", "changed", ""), ("guidelines", "changed", "")]

    def test_identical_policies_have_no_changes(self):
        """Equal policies differ in nothing."""
        policy = Policy(name="p", categories={"violence": CategoryRule()})
        assert semantic_diff(policy, policy) == ()


def test_changed_clauses_compares_rendered_text():
    """Only clauses whose rendered text, action or stages differ are reported."""
    old = Policy(name="p", categories={"violence": CategoryRule(), "hate": CategoryRule()})
    new = Policy(name="p", categories={"violence": CategoryRule(max_severity="low"), "hate": CategoryRule()})
    assert changed_clauses(old, new) == frozenset({"violence"})
