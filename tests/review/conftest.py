"""Fixtures for the review workflow: small policies on disk and severity-aware fake scorers (no model)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from csrm_guard.testing import FakeScorer

from .review_helpers import EXAMPLES, POLICY, TESTS, XFAIL_TESTS, marker_probability, oracle_for


@pytest.fixture(name="marker_scorer")
def _marker_scorer() -> FakeScorer:
    """A FakeScorer driven by markers in the conversation."""
    return FakeScorer(marker_probability, threshold=0.5)


@pytest.fixture(name="bank_dir")
def _bank_dir(tmp_path: Path) -> Path:
    """A folder ``policies/bank`` holding a policy with one inline case and a tests file with three."""
    folder = tmp_path / "policies" / "bank"
    folder.mkdir(parents=True)
    (folder / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (folder / "policy_test.yaml").write_text(TESTS, encoding="utf-8")
    return folder


@pytest.fixture(name="xfail_dir")
def _xfail_dir(bank_dir: Path) -> Path:
    """The bank folder with ``known_test.yaml`` added: one case that xfails and one that xpasses."""
    (bank_dir / "known_test.yaml").write_text(XFAIL_TESTS, encoding="utf-8")
    return bank_dir


@pytest.fixture(name="oracle_factory")
def _oracle_factory() -> Callable[[Path], FakeScorer]:
    """Build an oracle scorer for a folder of policies."""
    return oracle_for


@pytest.fixture(name="examples_copy")
def _examples_copy(tmp_path: Path) -> Path:
    """A writable copy of the repository's example policies."""
    if not EXAMPLES.is_dir():
        pytest.skip("the example policies are not in this checkout")
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target
