"""Tests for ``csrm-guard validate``, ``render`` and ``schema``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from csrm_guard.cli import main
from csrm_guard.policy import load_policy, render_policy

_POLICIES = Path(__file__).parents[2] / "policies"
_EXAMPLES = sorted(path.parent for path in _POLICIES.glob("*/policy.yaml"))
_BROKEN = "name: broken\ncategories:\n  violnce: {max_severity: low}\n"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(name="broken")
def _broken(tmp_path) -> Path:
    path = tmp_path / "broken" / "policy.yaml"
    path.parent.mkdir()
    path.write_text(_BROKEN, encoding="utf-8")
    return path


def test_there_are_six_or_more_examples():
    """At least six example deployments ship with the repository."""
    names = {path.name for path in _EXAMPLES}
    assert len(names) >= 6
    assert {"general-assistant", "game-studio", "kids-education", "legal-research", "harm-reduction"} <= names
    assert "bank-support" in names


class TestValidate:
    def test_examples_are_valid(self, capsys):
        """validate policies/ passes and lists every example."""
        code, out, _ = _run(capsys, "validate", str(_POLICIES))
        assert code == 0
        assert out.count("ok    ") == len(_EXAMPLES)
        assert f"{len(_EXAMPLES)} checked: {len(_EXAMPLES)} valid, 0 invalid" in out

    def test_broken_policy_names_file_line_and_field(self, capsys, broken):
        """A broken policy fails with exit 1 and a message naming file, line, column and field."""
        code, out, _ = _run(capsys, "validate", str(broken))
        assert code == 1
        assert (
            f"{broken}:3:3: categories.violnce: unknown category 'violnce' (did you mean 'violence'?)" in out
        )

    def test_json_output(self, capsys, broken):
        """--format json reports each file with structured problems."""
        code, out, _ = _run(capsys, "validate", "--format", "json", str(broken), str(_EXAMPLES[0]))
        report = json.loads(out)
        assert code == 1
        assert (report["ok"], report["checked"], report["invalid"]) == (False, 2, 1)
        bad, good = report["results"]
        assert bad["errors"] == [
            {
                "file": str(broken),
                "line": 3,
                "column": 3,
                "field": "categories.violnce",
                "problem": "unknown category 'violnce' (did you mean 'violence'?)",
            }
        ]
        assert good["ok"]
        assert good["hash"] == load_policy(_EXAMPLES[0]).hash

    def test_missing_path_is_a_usage_error(self, capsys, tmp_path):
        """A path that does not exist exits 2."""
        code, _, err = _run(capsys, "validate", str(tmp_path / "nope"))
        assert code == 2
        assert "no such file" in err

    def test_empty_folder_fails(self, capsys, tmp_path):
        """A folder without policies exits 1 and says so."""
        code, _, err = _run(capsys, "validate", str(tmp_path))
        assert code == 1
        assert "no policy files" in err

    def test_no_arguments_is_a_usage_error(self, capsys):
        """validate without a path exits 2."""
        assert _run(capsys, "validate")[0] == 2


class TestRender:
    @pytest.mark.parametrize("folder", _EXAMPLES, ids=lambda path: path.name)
    def test_examples_match_their_golden(self, capsys, folder):
        """render --check passes for every example policy against its rendered.txt."""
        code, out, err = _run(capsys, "render", str(folder), "--check")
        assert code == 0, out + err

    def test_prints_the_rendered_text(self, capsys):
        """render prints RenderedPolicy.text."""
        code, out, _ = _run(capsys, "render", str(_EXAMPLES[0]))
        assert code == 0
        assert out == render_policy(load_policy(_EXAMPLES[0])).text

    def test_check_shows_a_diff_and_fails(self, capsys, tmp_path):
        """A stale golden fails with exit 1 and a unified diff."""
        golden = tmp_path / "golden.txt"
        golden.write_text("# an old rendering\n", encoding="utf-8")
        code, out, err = _run(capsys, "render", str(_EXAMPLES[0]), "--check", str(golden))
        assert code == 1
        assert out.startswith(f"--- {golden}\n+++ rendered\n")
        assert "-# an old rendering" in out
        assert "--write" in err

    def test_write_then_check(self, capsys, tmp_path, broken):
        """--write creates the golden next to the policy and --check then passes."""
        broken.write_text("name: fixed\ncategories: {violence: {max_severity: low}}\n", encoding="utf-8")
        assert _run(capsys, "render", str(broken.parent), "--write")[0] == 0
        assert (broken.parent / "rendered.txt").is_file()
        assert _run(capsys, "render", str(broken), "--check")[0] == 0

    def test_missing_golden(self, capsys, tmp_path):
        """--check against a missing golden fails with a hint."""
        code, _, err = _run(capsys, "render", str(_EXAMPLES[0]), "--check", str(tmp_path / "none.txt"))
        assert code == 1
        assert "--write" in err

    def test_invalid_policy(self, capsys, broken):
        """render of an invalid policy exits 1 with the located message."""
        code, _, err = _run(capsys, "render", str(broken))
        assert code == 1
        assert f"{broken}:3:3" in err

    def test_json_format(self, capsys):
        """render --format json lists the clauses with their metadata."""
        code, out, _ = _run(capsys, "render", str(_EXAMPLES[0]), "--format", "json")
        data = json.loads(out)
        rendered = render_policy(load_policy(_EXAMPLES[0]))
        assert code == 0
        assert data["hash"] == rendered.hash
        assert [clause["id"] for clause in data["clauses"]] == [clause.id for clause in rendered.clauses]


class TestSchema:
    def test_every_example_validates_against_the_schema(self, capsys):
        """The emitted JSON Schema accepts every example policy file as written."""
        jsonschema = pytest.importorskip("jsonschema")
        code, out, _ = _run(capsys, "schema")
        schema = json.loads(out)
        assert code == 0
        jsonschema.Draft202012Validator.check_schema(schema)
        for folder in _EXAMPLES:
            document = yaml.safe_load((folder / "policy.yaml").read_text(encoding="utf-8"))
            jsonschema.validate(document, schema)

    def test_schema_rejects_a_broken_policy(self, capsys):
        """The schema flags an unknown category."""
        jsonschema = pytest.importorskip("jsonschema")
        _run(capsys, "schema")
        schema = json.loads(_run(capsys, "schema")[1])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(yaml.safe_load(_BROKEN), schema)

    def test_output_file(self, capsys, tmp_path):
        """schema -o writes the schema to a file."""
        target = tmp_path / "schema.json"
        assert _run(capsys, "schema", "-o", str(target))[0] == 0
        assert json.loads(target.read_text(encoding="utf-8"))["title"] == "Policy"
