from __future__ import annotations

from pathlib import Path

import pytest

from csrm_guard.errors import PolicyValidationError
from csrm_guard.review.discover import discover, load_cases, select


class TestDiscover:
    def test_finds_inline_and_sibling_cases(self, bank_dir: Path):
        """A folder yields one suite with the inline case first, then the tests file's cases."""
        found = discover([bank_dir.parent])
        assert [suite.policy.name for suite in found.suites] == ["bank"]
        names = [case.test.name for case in found.cases]
        assert names == [
            "greeting",
            "fraud is blocked",
            "story with a fistfight",
            "competitor recommendation",
        ]
        assert found.cases[0].file.name == "policy.yaml"
        assert found.cases[1].file.name == "policy_test.yaml"

    def test_cases_carry_their_line(self, bank_dir: Path):
        """Each case knows the line it starts on, for failure messages."""
        lines = {case.test.name: case.line for case in discover([bank_dir]).cases}
        assert lines["greeting"] == 13
        assert lines["fraud is blocked"] == 2
        assert lines["competitor recommendation"] == 9

    def test_tests_file_named_explicitly_finds_its_policy(self, bank_dir: Path):
        """Naming only the tests file loads the sibling policy.yaml it tests."""
        cases = discover([bank_dir / "policy_test.yaml"]).cases
        assert {case.policy.name for case in cases} == {"bank"}
        assert len(cases) == 3

    def test_stem_test_file_pairs_with_stem_policy(self, tmp_path: Path, bank_dir: Path):
        """``shop_test.yaml`` tests ``shop.yaml`` in the same folder (OPA's naming)."""
        text = (bank_dir / "policy.yaml").read_text().replace("name: bank", "name: shop")
        (tmp_path / "shop.yaml").write_text(text)
        (tmp_path / "shop_test.yaml").write_text((bank_dir / "policy_test.yaml").read_text())
        cases = discover([tmp_path / "shop_test.yaml"]).cases
        assert {case.policy.name for case in cases} == {"shop"}

    def test_policy_key_names_the_policy(self, bank_dir: Path):
        """A tests file in another folder finds its policy by name among the discovered ones."""
        other = bank_dir.parent / "shared-tests"
        other.mkdir()
        (other / "extra_test.yaml").write_text(
            "policy: bank\ntests:\n  - {name: extra, messages: [{role: user, content: hi}], expect: allow}\n"
        )
        names = [case.id for case in discover([bank_dir.parent]).cases]
        assert "bank::extra" in names

    def test_policy_key_names_a_missing_policy(self, bank_dir: Path):
        """A tests file naming a policy that does not exist fails with the file and the name."""
        (bank_dir / "ghost_test.yaml").write_text("policy: ghost\ntests: []\n")
        with pytest.raises(PolicyValidationError, match=r"ghost_test\.yaml.*no policy named 'ghost'"):
            discover([bank_dir])

    def test_duplicate_case_names_are_rejected(self, bank_dir: Path):
        """Two cases of one policy with the same name are an error naming both places."""
        tests = bank_dir / "policy_test.yaml"
        duplicate = "  - {name: greeting, messages: [{role: user, content: x}], expect: allow}\n"
        tests.write_text(tests.read_text() + duplicate)
        with pytest.raises(PolicyValidationError, match=r"two cases named 'greeting'.*policy\.yaml:13"):
            discover([bank_dir])

    def test_invalid_case_names_file_line_and_field(self, bank_dir: Path):
        """A malformed case reports the tests file, its line and the field path."""
        (bank_dir / "policy_test.yaml").write_text(
            "tests:\n  - name: ok\n    messages: [{role: user, content: hi}]\n    expect: alow\n"
        )
        with pytest.raises(PolicyValidationError) as info:
            discover([bank_dir])
        error = info.value
        assert error.file is not None
        assert error.file.endswith("policy_test.yaml")
        assert error.line == 2
        assert error.field is not None
        assert error.field.startswith("tests[0].expect")

    def test_unknown_top_level_key(self, bank_dir: Path):
        """A tests file only has 'policy' and 'tests'."""
        (bank_dir / "policy_test.yaml").write_text("cases: []\n")
        with pytest.raises(PolicyValidationError, match="unknown key 'cases'"):
            discover([bank_dir])

    def test_missing_path(self, tmp_path: Path):
        """A path that does not exist is reported, not silently skipped."""
        with pytest.raises(PolicyValidationError, match="no such file"):
            discover([tmp_path / "nope"])

    def test_policy_without_tests_is_a_suite_without_cases(self, tmp_path: Path):
        """A policy with no tests is found, with zero cases."""
        (tmp_path / "policy.yaml").write_text("name: lonely\n")
        found = discover([tmp_path])
        assert [len(suite.cases) for suite in found.suites] == [1 - 1]
        assert found.policies[0].name == "lonely"


class TestSelect:
    def test_pattern_matches_policy_and_case(self, bank_dir: Path):
        """``--run`` patterns are searched in ``<policy>::<case>``."""
        cases = discover([bank_dir]).cases
        assert [c.test.name for c in select(cases, "fraud|fistfight")] == [
            "fraud is blocked",
            "story with a fistfight",
        ]
        assert len(select(cases, r"^bank::")) == len(cases)
        assert select(cases, "^nothing$") == ()

    def test_no_pattern_keeps_all(self, bank_dir: Path):
        """Without a pattern every case is kept."""
        cases = discover([bank_dir]).cases
        assert select(cases, None) == cases


def test_load_cases_returns_only_the_files_own_cases(bank_dir: Path):
    """load_cases on a policy file gives its inline cases, on a tests file that file's cases."""
    assert [c.test.name for c in load_cases(bank_dir / "policy.yaml")] == ["greeting"]
    assert len(load_cases(bank_dir / "policy_test.yaml")) == 3
