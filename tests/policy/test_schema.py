"""Tests for the policy models: validation rules, errors, hashing and the JSON Schema."""

from __future__ import annotations

import pytest

from csrm_guard import Action, CategoryRule, Policy, PolicyTest, Rule, Severity, StageSettings
from csrm_guard.errors import PolicyError, PolicyValidationError
from csrm_guard.policy.schema import policy_json_schema
from csrm_guard.policy.taxonomy import load_taxonomy


def _test_case(**overrides):
    data = {"name": "case", "messages": [{"role": "user", "content": "hi"}], "expect": "allow"}
    data.update(overrides)
    return data


class TestSeverity:
    def test_ordered_by_rank_not_alphabet(self):
        """Severities compare by rank: none < low < moderate < high."""
        assert Severity.NONE < Severity.LOW < Severity.MODERATE < Severity.HIGH
        assert max(Severity.HIGH, Severity.LOW) is Severity.HIGH
        assert sorted([Severity.HIGH, Severity.NONE, Severity.MODERATE]) == [
            Severity.NONE,
            Severity.MODERATE,
            Severity.HIGH,
        ]

    def test_rank_round_trip(self):
        """from_rank inverts rank for every level."""
        assert [Severity.from_rank(level.rank) for level in Severity] == list(Severity)

    def test_level_names_compare_by_rank(self):
        """A plain level name compares by rank on either side, never alphabetically."""
        assert Severity.HIGH > "low"
        assert "low" < Severity.HIGH  # noqa: SIM300 - the reflected comparison is what is tested
        assert not Severity.HIGH < "low"

    @pytest.mark.parametrize("other", [3, "extreme", None])
    def test_comparison_with_other_values_is_refused(self, other):
        """Comparing a severity with anything but a level raises TypeError."""
        with pytest.raises(TypeError):
            _ = Severity.LOW < other  # noqa: SIM300 - the severity must be on the left


class TestCategoryRule:
    def test_allowed_means_high(self):
        """An allowed category tolerates every severity."""
        assert CategoryRule(allowed=True).effective_max is Severity.HIGH
        assert CategoryRule(max_severity="low").effective_max is Severity.LOW

    def test_unknown_key_suggests_the_field(self):
        """A misspelt field names the field it probably meant."""
        with pytest.raises(PolicyValidationError, match="did you mean 'max_severity'"):
            CategoryRule(max_severty="low")  # type: ignore[call-arg]

    def test_bad_severity_suggests_a_level(self):
        """A misspelt severity names the closest level."""
        with pytest.raises(PolicyValidationError, match="did you mean 'moderate'") as info:
            CategoryRule(max_severity="moderat")  # type: ignore[arg-type]
        assert info.value.field == "max_severity"


class TestPolicy:
    def test_defaults(self):
        """A policy needs only a name; stages default to block, fail closed, model threshold."""
        policy = Policy(name="demo")
        assert policy.input == StageSettings()
        assert policy.output.action is Action.BLOCK
        assert policy.input.threshold is None
        assert policy.api_version == "csrm-guard/v1"

    def test_frozen(self):
        """Policies are immutable."""
        policy = Policy(name="demo")
        with pytest.raises(Exception, match="frozen"):
            policy.name = "other"  # type: ignore[misc]

    def test_unknown_category_suggests(self):
        """An unknown category id names the closest standard category and its path."""
        with pytest.raises(PolicyValidationError) as info:
            Policy(name="demo", categories={"violnce": CategoryRule()})
        assert "did you mean 'violence'" in info.value.problem
        assert info.value.field == "categories.violnce"

    def test_hard_limit_cannot_be_allowed(self):
        """A hard-limit category can be neither allowed nor given a severity above none."""
        with pytest.raises(PolicyValidationError, match="hard limit") as info:
            Policy(name="demo", categories={"sexual_minors": CategoryRule(allowed=True)})
        assert info.value.field == "categories.sexual_minors.allowed"
        with pytest.raises(PolicyValidationError, match="hard limit"):
            Policy(name="demo", categories={"sexual_minors": CategoryRule(max_severity="low")})

    def test_ceiling_below_high(self):
        """A category with ceiling 'low' rejects 'moderate' and accepts 'low'."""
        capped = [c for c in load_taxonomy().categories if c.ceiling is Severity.LOW]
        assert capped, "the taxonomy should have a category capped at low"
        category = capped[0].id
        Policy(name="demo", categories={category: CategoryRule(max_severity="low")})
        with pytest.raises(PolicyValidationError, match="cannot be allowed above 'low'"):
            Policy(name="demo", categories={category: CategoryRule(max_severity="moderate")})

    def test_duplicate_rule_ids(self):
        """Two rules with one id are rejected at the second rule's id."""
        rules = [Rule(id="a", text="x"), Rule(id="a", text="y")]
        with pytest.raises(PolicyValidationError, match="used twice") as info:
            Policy(name="demo", rules=rules)
        assert info.value.field == "rules[1].id"

    def test_rule_id_clashing_with_category(self):
        """A rule may not reuse a standard category id."""
        with pytest.raises(PolicyValidationError, match="clashes"):
            Policy(name="demo", rules=[Rule(id="violence", text="x")])

    def test_every_problem_is_reported(self):
        """All problems found in one pass are listed, each with its own field."""
        with pytest.raises(PolicyValidationError) as info:
            Policy.model_validate({"name": "Bad Name", "input": {"action": "blok"}, "extra": 1})
        fields = {problem.field for problem in info.value.problems}
        assert fields == {"name", "input.action", "extra"}
        assert str(info.value).count("\n") == 2

    def test_integer_version_is_text(self):
        """An integer version becomes its decimal text; a float is refused with a hint to quote it."""
        assert Policy(name="demo", version=3).version == "3"  # type: ignore[arg-type]
        with pytest.raises(PolicyValidationError, match="quote it"):
            Policy(name="demo", version=1.1)  # type: ignore[arg-type]

    def test_single_extends_string(self):
        """A single parent may be given as a string."""
        assert Policy(name="demo", extends="../base").extends == ("../base",)  # type: ignore[arg-type]

    def test_model_validate_maps_errors(self):
        """model_validate raises the library's error, not Pydantic's."""
        with pytest.raises(PolicyError):
            Policy.model_validate({"name": 5})


class TestHash:
    def test_equal_policies_hash_equal(self):
        """Equal policies built separately have the same hash."""
        first = Policy(name="demo", categories={"hate": CategoryRule()})
        second = Policy(name="demo", categories={"hate": {"max_severity": "none"}})
        assert first == second
        assert first.hash == second.hash
        assert hash(first) == hash(second)

    def test_decision_fields_change_the_hash(self):
        """Changing a severity changes the hash."""
        low = Policy(name="demo", categories={"hate": CategoryRule(max_severity="low")})
        none = Policy(name="demo", categories={"hate": CategoryRule()})
        assert low.hash != none.hash

    def test_tests_and_extends_do_not_change_the_hash(self):
        """Tests and the extends record are left out of the hash."""
        plain = Policy(name="demo")
        with_tests = Policy(name="demo", tests=[PolicyTest(**_test_case())], extends=("../x",))
        assert plain.hash == with_tests.hash

    def test_xfail_markers_do_not_change_the_hash(self):
        """Marking a case xfail changes the policy's tests, not its decisions, so the hash stays."""
        plain = Policy(name="demo", tests=[PolicyTest(**_test_case())])
        marked = Policy(name="demo", tests=[PolicyTest(**_test_case(xfail="model reads this as hate"))])
        assert plain != marked
        assert plain.hash == marked.hash


class TestPolicyTests:
    def test_output_stage_needs_a_response(self):
        """An output-stage case without a response is rejected."""
        with pytest.raises(PolicyValidationError, match="needs a 'response'"):
            PolicyTest(**_test_case(stage="output"))

    def test_stage_is_inferred(self):
        """A case with a response checks the output stage, otherwise the input stage."""
        assert PolicyTest(**_test_case()).judged_stage == "input"
        assert PolicyTest(**_test_case(response="ok")).judged_stage == "output"

    def test_allow_cannot_list_violations(self):
        """A case expecting allow may not name violations."""
        with pytest.raises(PolicyValidationError, match="cannot list"):
            PolicyTest(**_test_case(violations=["hate"]))

    def test_expected_violation_must_be_checked(self):
        """A case naming a category the policy does not check is rejected with a suggestion."""
        case = _test_case(expect="violation", violations=["violnce"])
        with pytest.raises(PolicyValidationError, match="did you mean 'violence'") as info:
            Policy(name="demo", categories={"violence": CategoryRule()}, tests=[case])
        assert info.value.field == "tests[0].violations[0]"

    def test_hard_limits_and_rules_are_valid_expectations(self):
        """Hard limits (always checked), rules and guideline clauses may be expected violations."""
        case = _test_case(expect="violation", violations=["sexual_minors", "r1", "guidelines.2"])
        policy = Policy(name="demo", rules=[Rule(id="r1", text="x")], guidelines="A. B.", tests=[case])
        assert policy.tests[0].violations == ("sexual_minors", "r1", "guidelines.2")

    def test_xfail_takes_a_reason(self):
        """An xfail marker is a reason; it is optional and kept as written."""
        assert PolicyTest(**_test_case()).xfail is None
        assert (
            PolicyTest(**_test_case(xfail="war history reads as hate")).xfail == "war history reads as hate"
        )

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("", "needs a reason"),
            ("  \n", "needs a reason"),
            (True, "not true/false"),
            ("x" * 501, "at most 500 characters"),
        ],
    )
    def test_xfail_without_a_usable_reason_is_rejected(self, value: object, problem: str):
        """An empty, blank, boolean or overlong xfail reason is rejected at tests[N].xfail."""
        with pytest.raises(PolicyValidationError, match=problem) as info:
            Policy(name="demo", tests=[_test_case(xfail=value)])
        assert info.value.field == "tests[0].xfail"


class TestJsonSchema:
    def test_schema_lists_categories_and_forbids_extra_keys(self):
        """The JSON Schema restricts category keys to the taxonomy and rejects unknown top-level keys."""
        schema = policy_json_schema()
        assert schema["properties"]["categories"]["propertyNames"]["enum"] == list(load_taxonomy().ids)
        assert schema["additionalProperties"] is False
        assert schema["$schema"].endswith("2020-12/schema")

    def test_schema_accepts_a_string_extends(self):
        """The schema allows extends as a string or a list."""
        jsonschema = pytest.importorskip("jsonschema")
        schema = policy_json_schema()
        jsonschema.validate({"name": "x", "extends": "../base"}, schema)
        jsonschema.validate({"name": "x", "extends": ["../a", "../b"]}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"name": "x", "categories": {"violnce": {}}}, schema)

    def test_schema_knows_xfail(self):
        """The schema accepts an xfail reason on a case and rejects a blank one or a boolean."""
        jsonschema = pytest.importorskip("jsonschema")
        schema = policy_json_schema()
        jsonschema.validate({"name": "x", "tests": [_test_case(xfail="known limitation")]}, schema)
        for bad in ("", "   ", True):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({"name": "x", "tests": [_test_case(xfail=bad)]}, schema)
