from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from csrm_guard.errors import MissingDependencyError, PolicyError, PolicyValidationError
from csrm_guard.review import fmt as fmt_module
from csrm_guard.review.fmt import format_file, format_paths, format_text

EXAMPLES = Path(__file__).resolve().parents[2] / "policies"

MESSY = """\
# Header of the file.

name: demo   # the name
api_version: csrm-guard/v1
categories:
  # hate is listed first here
  hate: {max_severity: none}  # flow
  violence:
    # above max
    max_severity: low   # eol
    allowed: false
rules:
  - text: "No talk about competitors."
    id: competitors
# before output
output:
  threshold: 0.5
  action: refuse
"""

CANONICAL = """\
# Header of the file.

api_version: csrm-guard/v1
name: demo   # the name
categories:
  violence:
    allowed: false
    # above max
    max_severity: low   # eol
  # hate is listed first here
  hate: {max_severity: none}  # flow
rules:
  - id: competitors
    text: "No talk about competitors."
# before output
output:
  action: refuse
  threshold: 0.5
"""


class TestFormatText:
    def test_canonical_order_keeps_comments_with_their_keys(self):
        """Keys follow the schema, categories the taxonomy; each comment stays above or beside its key."""
        assert format_text(MESSY) == CANONICAL

    def test_idempotent(self):
        """Formatting canonical text changes nothing."""
        assert format_text(CANONICAL) == CANONICAL

    def test_tests_file_order(self):
        """A tests file puts 'policy' first, then each case's keys in schema order."""
        text = (
            "tests:\n- expect: allow\n  messages:\n  - content: hi\n    role: user\n  name: t\npolicy: bank\n"
        )
        assert format_text(text, kind="tests") == (
            "policy: bank\ntests:\n  - name: t\n    messages:\n      - role: user\n        content: hi\n"
            "    expect: allow\n"
        )

    def test_xfail_goes_last_in_a_case(self):
        """A case's xfail reason is put after its note, the last key of a case."""
        text = "tests:\n  - xfail: known\n    note: why\n    expect: allow\n    name: t\n    messages: []\n"
        assert format_text(text, kind="tests") == (
            "tests:\n  - name: t\n    messages: []\n    expect: allow\n    note: why\n    xfail: known\n"
        )

    def test_comment_above_a_list_items_first_key(self):
        """A comment above a key that moves to the front of a list item ends up above the item."""
        text = "tests:\n  - expect: allow\n    # why this case\n    name: t\n    messages: [{role: user, content: x}]\n"
        assert format_text(text, kind="tests") == (
            "tests:\n  # why this case\n  - name: t\n    messages: [{role: user, content: x}]\n    expect: allow\n"
        )

    def test_quotes_are_kept(self):
        """Quoted scalars stay quoted, since unquoting 'yes' would turn it into a boolean."""
        assert format_text("name: p\ndescription: 'yes'\n") == "name: p\ndescription: 'yes'\n"

    def test_unknown_keys_go_last_in_their_order(self):
        """Keys the schema does not know are kept after the known ones (validation reports them)."""
        assert format_text("zeta: 1\nname: p\nalpha: 2\n") == "name: p\nzeta: 1\nalpha: 2\n"

    def test_json(self):
        """JSON policies are re-serialised with two-space indentation in schema order."""
        assert format_text('{"version": "2", "name": "p"}', json_format=True) == (
            '{\n  "name": "p",\n  "version": "2"\n}\n'
        )

    def test_invalid_yaml_names_the_line(self):
        """Unparseable text fails with its location."""
        with pytest.raises(PolicyValidationError) as info:
            format_text("name: p\ncategories: [\n", filename="p.yaml")
        assert info.value.file == "p.yaml"
        assert info.value.line is not None

    def test_not_a_mapping(self):
        """A file that is not a mapping is rejected."""
        with pytest.raises(PolicyValidationError, match="mapping"):
            format_text("- a\n- b\n")

    def test_missing_ruamel_names_the_extra(self, monkeypatch: pytest.MonkeyPatch):
        """Without ruamel.yaml, YAML formatting explains which extra installs it."""
        monkeypatch.setitem(sys.modules, "ruamel.yaml", None)
        with pytest.raises(MissingDependencyError, match=r"csrm-guard\[review\]"):
            format_text("name: p\n")

    def test_meaning_guard(self, monkeypatch: pytest.MonkeyPatch):
        """If the round trip ever changed a value, nothing is written and the error says so."""
        monkeypatch.setattr(fmt_module, "_format_yaml", lambda text, kind, filename: "name: other\n")
        with pytest.raises(PolicyError, match="would change the file's meaning"):
            format_text("name: p\n")


_KEYS = ["api_version", "name", "version", "description", "refusal"]


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(_KEYS), commented=st.lists(st.booleans(), min_size=5, max_size=5))
def test_any_key_order_gives_one_canonical_text(order: list[str], commented: list[bool]):
    """Whatever the key order, the output is the same canonical order and each comment sits above its key."""
    values = {
        "api_version": "csrm-guard/v1",
        "name": "p",
        "version": "'3'",
        "description": "d",
        "refusal": "r",
    }
    lines = []
    for key, comment in zip(order, commented, strict=True):
        if comment:
            lines.append(f"# about {key}")
        lines.append(f"{key}: {values[key]}")
    out = format_text("\n".join(lines) + "\n").splitlines()
    assert [line.split(":")[0] for line in out if not line.startswith("#")] == _KEYS
    for key, comment in zip(order, commented, strict=True):
        if comment:
            assert out[out.index(f"# about {key}") + 1].startswith(f"{key}:")


def test_example_policies_round_trip():
    """Every example policy formats to the same meaning, and formatting it again changes nothing."""
    if not EXAMPLES.is_dir():
        pytest.skip("no example policies")
    for path in sorted(EXAMPLES.glob("*/policy.yaml")):
        result = format_file(path)
        assert yaml.safe_load(result.formatted) == yaml.safe_load(result.original), path
        assert format_text(result.formatted) == result.formatted, path


def test_format_paths_writes_and_diffs(tmp_path: Path):
    """format_paths rewrites changed files; the result's diff shows the change."""
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "policy.yaml").write_text(MESSY)
    (folder / "notes.yaml").write_text("b: 1\na: 2\n")  # not a policy file name: left alone
    (result,) = format_paths([tmp_path])
    assert result.changed
    assert "+api_version: csrm-guard/v1" in result.diff()
    assert (folder / "policy.yaml").read_text() == MESSY
    format_paths([tmp_path], write=True)
    assert (folder / "policy.yaml").read_text() == CANONICAL
    assert not format_file(folder / "policy.yaml").changed
