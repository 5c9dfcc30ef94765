"""Tests for the export subcommand's options (csrm_guard/cli/train_cmds.py), with the export itself stubbed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from csrm_guard.cli import main
from csrm_guard.model.manifest import Manifest
from csrm_guard.training import export


@pytest.fixture(name="captured")
def _captured(monkeypatch: pytest.MonkeyPatch) -> list[export.ExportOptions]:
    calls: list[export.ExportOptions] = []

    def fake_export(checkpoint: Path, options: export.ExportOptions) -> Manifest:
        calls.append(options)
        return Manifest(
            model_id="m", model_version="1", files={}, template_version="1", template_hash="h",
            taxonomy_version="1", categories=(),
        )  # fmt: skip

    monkeypatch.setattr(export, "export_bundle", fake_export)
    return calls


def _export(*extra: str) -> list[str]:
    return ["export", "--checkpoint", "c.pt", "--data", "d", "--out", "o", *extra]


def test_policy_level_fit_is_the_default(captured):
    """Without options the recommended thresholds are fitted under the default policy."""
    assert main(_export()) == 0
    assert captured[0].fit_policy == export.DEFAULT_FIT_POLICY
    assert captured[0].reduce_range is True


def test_fit_policy_and_clause_thresholds(captured):
    """--fit-policy picks the policy; --clause-thresholds turns the policy-level fit off."""
    assert main(_export("--fit-policy", "p.yaml")) == 0
    assert main(_export("--clause-thresholds")) == 0
    assert captured[0].fit_policy == Path("p.yaml")
    assert captured[1].fit_policy is None
