"""The command outputs shown in docs/review.md are what the commands print (with the stand-in scorer)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from csrm_guard.cli import main
from csrm_guard.review.fmt import format_paths
from csrm_guard.review.runner import GuardPool

from .review_helpers import EXAMPLES, REPO, oracle_for

PAGE = REPO / "docs" / "review.md"
_TIME = re.compile(r"in \d+\.\d+s")


def _shown(command: str) -> str:
    """The output printed under ``$ command`` in a text block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(f"$ {command}\n") + len(command) + 3
    return text[start : text.index("```", start)]


@pytest.fixture(name="walkthrough")
def _walkthrough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's walkthrough: formatted examples as the base, bank-support's crime limit raised to moderate."""
    if not EXAMPLES.is_dir():
        pytest.skip("no example policies")
    shutil.copytree(EXAMPLES, tmp_path / "policies")
    format_paths([tmp_path / "policies"], write=True)
    shutil.copytree(tmp_path / "policies", tmp_path / "base" / "policies")
    oracle = oracle_for(tmp_path / "base" / "policies")
    monkeypatch.setattr(GuardPool, "load_scorer", staticmethod(lambda model: oracle))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_test_output(walkthrough: Path, capsys: pytest.CaptureFixture[str]):
    """The passing run of bank-support's cases is shown as printed."""
    assert main(["test", "policies/", "--run", "^bank-support::"]) == 0
    assert _TIME.sub("in Ts", capsys.readouterr().out) == _TIME.sub(
        "in Ts", _shown("csrm-guard test policies/ --run '^bank-support::'")
    )


def test_diff_output(walkthrough: Path, capsys: pytest.CaptureFixture[str]):
    """The diff after loosening one severity is shown as printed, and the failing case as reported."""
    policy = walkthrough / "policies" / "bank-support" / "policy.yaml"
    text = policy.read_text()
    policy.write_text(
        text.replace("crime_nonviolent: {max_severity: low}", "crime_nonviolent: {max_severity: moderate}")
    )
    assert main(["diff", "base/policies", "policies"]) == 0
    assert capsys.readouterr().out == _shown("csrm-guard diff base/policies policies")
    assert main(["test", "policies/", "--run", "money-laundering"]) == 1
    failure = capsys.readouterr().out
    page = PAGE.read_text(encoding="utf-8")
    block = failure[failure.index("  FAIL") : failure.index("-" * 60)]
    assert block in page
