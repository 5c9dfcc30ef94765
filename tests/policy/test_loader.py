"""Tests for loading policies from files: formats, extends, and error locations."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from csrm_guard import CategoryRule, Policy, PolicyTest, Rule, StageSettings, load_policy
from csrm_guard.errors import PolicyError, PolicyValidationError
from csrm_guard.policy.loader import MAX_FILE_BYTES, find_policy_files, load_policy_text

_POLICY_YAML = """\
api_version: csrm-guard/v1
name: shop
version: "2"
description: Shop assistant.
categories:
  violence: {max_severity: low}
  hate: {}
  profanity: {allowed: true, action: monitor}
rules:
  - id: no-refunds
    text: Do not promise refunds.
    stages: [output]
input: {action: refuse, timeout_ms: 300}
refusal: Sorry, {{ policy.name }} can't help with that.
tests:
  - name: hello
    messages: [{role: user, content: hi}]
    expect: allow
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text), encoding="utf-8")
    return path


def _python_equivalent() -> Policy:
    return Policy(
        name="shop",
        version="2",
        description="Shop assistant.",
        categories={
            "violence": CategoryRule(max_severity="low"),
            "hate": CategoryRule(),
            "profanity": CategoryRule(allowed=True, action="monitor"),
        },
        rules=[Rule(id="no-refunds", text="Do not promise refunds.", stages=("output",))],
        input=StageSettings(action="refuse", timeout_ms=300),
        refusal="Sorry, {{ policy.name }} can't help with that.",
        tests=[PolicyTest(name="hello", messages=[{"role": "user", "content": "hi"}], expect="allow")],
    )


def _error(path: Path | str) -> PolicyValidationError:
    with pytest.raises(PolicyValidationError) as info:
        load_policy(path)
    return info.value


class TestFormats:
    def test_yaml_equals_python(self, tmp_path):
        """A YAML policy equals the same policy built in Python, hash included."""
        loaded = load_policy(_write(tmp_path, "shop.yaml", _POLICY_YAML))
        assert loaded == _python_equivalent()
        assert loaded.hash == _python_equivalent().hash

    def test_json_equals_yaml(self, tmp_path):
        """A JSON policy loads to the same object as its YAML twin."""
        data = _python_equivalent().model_dump(mode="json", exclude_defaults=True)
        path = tmp_path / "shop.json"
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        assert load_policy(path) == _python_equivalent()

    def test_folder_and_yml_suffix(self, tmp_path):
        """A folder loads its policy.yaml; .yml files load too."""
        _write(tmp_path, "shop/policy.yaml", _POLICY_YAML)
        _write(tmp_path, "other.yml", _POLICY_YAML)
        assert load_policy(tmp_path / "shop") == load_policy(tmp_path / "other.yml")

    def test_utf8_bom_and_bytes_text(self):
        """A UTF-8 byte-order mark is accepted, and bytes load like text."""
        policy = load_policy_text(b"\xef\xbb\xbf" + _POLICY_YAML.encode())
        assert policy == _python_equivalent()

    def test_merge_keys_and_anchors(self, tmp_path):
        """YAML anchors, aliases and << merge keys work, explicit keys winning."""
        path = _write(
            tmp_path,
            "p.yaml",
            """\
            name: anchors
            input: &stage {action: refuse, timeout_ms: 100}
            output:
              <<: *stage
              action: block
            """,
        )
        policy = load_policy(path)
        assert policy.output == StageSettings(action="block", timeout_ms=100)
        assert policy.input.action.value == "refuse"


class TestExtends:
    def test_override_rules(self, tmp_path):
        """Maps merge by key, rules by id, scalars override, and name and tests are not inherited."""
        _write(tmp_path, "base/policy.yaml", _POLICY_YAML)
        child = _write(
            tmp_path,
            "child/policy.yaml",
            """\
            name: shop-eu
            extends: ../base
            categories:
              violence: {max_severity: moderate}
              hate: null
            rules:
              - id: no-refunds
                stages: [input, output]
              - id: gdpr
                text: Do not store personal data.
            input: {timeout_ms: 500}
            """,
        )
        policy = load_policy(child)
        assert policy.name == "shop-eu"
        assert policy.extends == ("../base",)
        assert policy.categories["violence"].max_severity.value == "moderate"
        assert "hate" not in policy.categories
        assert policy.categories["profanity"].action is not None
        assert [(rule.id, rule.text, rule.stages) for rule in policy.rules] == [
            ("no-refunds", "Do not promise refunds.", ("input", "output")),
            ("gdpr", "Do not store personal data.", ("input", "output")),
        ]
        assert policy.input == StageSettings(action="refuse", timeout_ms=500)
        assert policy.tests == ()
        assert policy.refusal == _python_equivalent().refusal

    def test_extended_policy_hashes_like_the_flat_one(self, tmp_path):
        """A policy built through extends hashes like the same policy written out in full."""
        _write(tmp_path, "base.yaml", _POLICY_YAML)
        child = _write(tmp_path, "child.yaml", "extends: base.yaml\nname: shop\n")
        assert load_policy(child).hash == _python_equivalent().hash

    def test_several_parents_later_wins(self, tmp_path):
        """With several parents, later ones override earlier ones."""
        _write(tmp_path, "a.yaml", "name: a\ncategories: {violence: {max_severity: low}}\n")
        _write(tmp_path, "b.yaml", "name: b\ncategories: {violence: {max_severity: moderate}, hate: {}}\n")
        child = _write(tmp_path, "c.yaml", "name: c\nextends: [a.yaml, b.yaml]\n")
        policy = load_policy(child)
        assert policy.categories["violence"].max_severity.value == "moderate"
        assert set(policy.categories) == {"violence", "hate"}

    def test_chain_of_three(self, tmp_path):
        """Grandparent settings reach the grandchild through the parent."""
        _write(tmp_path, "g.yaml", "name: g\noutput: {action: monitor}\n")
        _write(tmp_path, "sub/p.yaml", "name: p\nextends: ../g.yaml\ninput: {action: refuse}\n")
        child = _write(tmp_path, "sub/deeper/c.yaml", "name: c\nextends: ../p.yaml\n")
        policy = load_policy(child)
        assert (policy.input.action.value, policy.output.action.value) == ("refuse", "monitor")

    def test_cycle_is_reported(self, tmp_path):
        """A cycle in extends names the files in it and the extends line."""
        _write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
        _write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
        error = _error(tmp_path / "a.yaml")
        assert "cycle" in error.problem
        assert error.file == str(tmp_path / "b.yaml")
        assert (error.line, error.field) == (2, "extends")

    def test_self_extends(self, tmp_path):
        """A policy extending itself is a cycle."""
        error = _error(_write(tmp_path, "a.yaml", "name: a\nextends: a.yaml\n"))
        assert "cycle" in error.problem

    def test_missing_parent(self, tmp_path):
        """A missing parent is reported at the extends entry."""
        error = _error(_write(tmp_path, "a.yaml", "name: a\nextends: [nope.yaml]\n"))
        assert "cannot read" in error.problem
        assert (error.file, error.line) == (str(tmp_path / "a.yaml"), 2)

    def test_bad_extends_type(self, tmp_path):
        """extends must be a path or a list of paths."""
        error = _error(_write(tmp_path, "a.yaml", "name: a\nextends: {path: x}\n"))
        assert error.field == "extends"

    def test_error_in_inherited_value_points_to_the_parent(self, tmp_path):
        """A bad value inherited from a parent is reported in the parent file."""
        _write(tmp_path, "base.yaml", "name: base\ninput:\n  action: blok\n")
        error = _error(_write(tmp_path, "child.yaml", "name: child\nextends: base.yaml\n"))
        assert (error.file, error.line, error.field) == (str(tmp_path / "base.yaml"), 3, "input.action")


class TestErrorLocations:
    def test_unknown_key_in_nested_rule(self, tmp_path):
        """An unknown key names file, line, column, path and the likely key."""
        path = _write(tmp_path, "p.yaml", "name: p\nrules:\n  - id: r\n    text: t\n    stagez: [input]\n")
        error = _error(path)
        assert (error.file, error.line, error.column) == (str(path), 5, 5)
        assert error.field == "rules[0].stagez"
        assert "did you mean 'stages'" in error.problem
        assert str(error).startswith(f"{path}:5:5: rules[0].stagez: unknown key")

    def test_unknown_category_points_at_the_key(self, tmp_path):
        """An unknown category is reported at its key with a suggestion."""
        path = _write(tmp_path, "p.yaml", "name: p\ncategories:\n  violnce: {max_severity: low}\n")
        error = _error(path)
        assert (error.line, error.column, error.field) == (3, 3, "categories.violnce")
        assert "did you mean 'violence'" in error.problem

    def test_wrong_value_points_at_the_value(self, tmp_path):
        """A wrong value is reported where the value starts."""
        path = _write(tmp_path, "p.yaml", "name: p\noutput:\n  threshold: 1.5\n")
        error = _error(path)
        assert (error.line, error.column, error.field) == (3, 14, "output.threshold")

    def test_missing_name_points_at_the_document(self, tmp_path):
        """A missing required key is reported at the enclosing mapping."""
        error = _error(_write(tmp_path, "p.yaml", "version: '1'\n"))
        assert (error.line, error.field) == (1, "name")
        assert "required" in error.problem

    def test_all_problems_are_listed(self, tmp_path):
        """Several problems in one file are all reported, in order, each with a line."""
        path = _write(tmp_path, "p.yaml", "name: p\ninput: {action: blok}\noutput: {fail: ajar}\n")
        error = _error(path)
        assert [(p.line, p.field) for p in error.problems] == [(2, "input.action"), (3, "output.fail")]

    def test_bad_refusal_template(self, tmp_path):
        """A refusal template the sandbox rejects is a validation error at the refusal line."""
        path = _write(tmp_path, "p.yaml", "name: p\nrefusal: \"{{ ''.__class__ }}\"\n")
        error = _error(path)
        assert (error.line, error.field) == (2, "refusal")

    def test_hard_limit_in_file(self, tmp_path):
        """Allowing a hard-limit category is reported at that category's field."""
        path = _write(tmp_path, "p.yaml", "name: p\ncategories:\n  sexual_minors:\n    allowed: true\n")
        error = _error(path)
        assert (error.line, error.field) == (4, "categories.sexual_minors.allowed")


class TestBadFiles:
    @pytest.mark.parametrize(
        ("text", "problem", "line"),
        [
            ("name: a\nname: b\n", "duplicate key 'name'", 2),
            ("name: !!python/object/apply:os.system ['true']\n", "not allowed", 1),
            ("name: !custom x\n", "not allowed", 1),
            ("name: a\n---\nname: b\n", "one YAML document", 2),
            ("", "empty", 1),
            ("- a\n- b\n", "mapping", 1),
            ("name: [unclosed\n", "invalid YAML", 2),
            ("name: *nowhere\n", "no complete anchor", 1),
            ("a: &x [*x]\n", "no complete anchor", 1),
            ("[a]: 1\n", "plain value", 1),
        ],
    )
    def test_yaml_problems(self, tmp_path, text, problem, line):
        """Malformed or unsafe YAML gives a located PolicyValidationError."""
        error = _error(_write(tmp_path, "p.yaml", text))
        assert problem in error.problem
        assert error.line == line

    def test_non_utf8(self, tmp_path):
        """A file that is not UTF-8 is reported at the first bad byte."""
        path = tmp_path / "p.yaml"
        path.write_bytes(b"name: ok\ndescription: caf\xe9\n")
        error = _error(path)
        assert (error.line, error.column) == (2, 17)
        assert "UTF-8" in error.problem

    def test_too_large(self, tmp_path):
        """Files over the size cap are refused before parsing."""
        path = tmp_path / "p.yaml"
        path.write_bytes(b"name: x\n" + b"#" * MAX_FILE_BYTES)
        assert "larger than" in _error(path).problem

    def test_deep_nesting(self, tmp_path):
        """Nesting beyond the limit is refused, not a RecursionError."""
        error = _error(_write(tmp_path, "p.yaml", "description: " + "[" * 5000 + "]" * 5000 + "\n"))
        assert "nesting" in error.problem or "depth" in error.problem

    def test_billion_laughs(self, tmp_path):
        """An alias bomb is stopped by the value budget."""
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
        error = _error(_write(tmp_path, "p.yaml", "\n".join(lines) + "\n"))
        assert "alias expansion" in error.problem

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ('{"name": "a", "name": "b"}', "duplicate key"),
            ('{"name": "a",}', "invalid JSON"),
            ("[1, 2]", "mapping"),
        ],
    )
    def test_json_problems(self, tmp_path, text, problem):
        """Malformed JSON gives a located PolicyValidationError."""
        path = tmp_path / "p.json"
        path.write_text(text, encoding="utf-8")
        error = _error(path)
        assert problem in error.problem
        assert error.line == 1

    def test_unsupported_suffix_and_missing_file(self, tmp_path):
        """Unknown file types and missing files are errors naming the path."""
        assert "unsupported file type" in _error(_write(tmp_path, "p.toml", "name = 'x'\n")).problem
        assert "cannot read" in _error(tmp_path / "missing.yaml").problem

    def test_folder_without_policy(self, tmp_path):
        """A folder without policy.yaml says what it looked for."""
        assert "policy.yaml" in _error(tmp_path).problem

    def test_not_a_regular_file(self, tmp_path):
        """A path that is not a regular file is refused without reading it."""
        fifo = tmp_path / "pipe.yaml"
        try:
            import os  # noqa: PLC0415 - only this test needs mkfifo

            os.mkfifo(fifo)
        except (AttributeError, OSError):
            pytest.skip("no FIFOs on this platform")
        assert "not a regular file" in _error(fifo).problem

    def test_errors_are_policy_errors(self, tmp_path):
        """Every loader error is catchable as PolicyError."""
        with pytest.raises(PolicyError):
            load_policy(_write(tmp_path, "p.yaml", "name: [\n"))


class TestFindPolicyFiles:
    def test_recursive_and_hidden_skipped(self, tmp_path):
        """Folders are searched recursively; hidden folders are skipped; files are kept as given."""
        _write(tmp_path, "a/policy.yaml", "name: a\n")
        _write(tmp_path, "b/nested/policy.json", "{}")
        _write(tmp_path, ".hidden/policy.yaml", "name: h\n")
        extra = _write(tmp_path, "extra.yaml", "name: e\n")
        found = find_policy_files([tmp_path, extra])
        assert found == [tmp_path / "a/policy.yaml", tmp_path / "b/nested/policy.json", extra]

    def test_missing_path(self, tmp_path):
        """A missing path raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            find_policy_files([tmp_path / "nope"])
