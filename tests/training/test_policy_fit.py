"""Tests for the policy-level fitting rows: which dev conversations join ``fit-general`` and with what label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csrm_guard.training.policy_fit import fitting_rows

POLICY = Path(__file__).resolve().parents[2] / "policies" / "general-assistant" / "policy.yaml"


def _row(
    row_id: str, source: str, *, harmful: bool, severity: dict[str, int], split: str = "dev"
) -> dict[str, Any]:
    return {
        "id": row_id,
        "source": source,
        "split": split,
        "stage": "input",
        "messages": [{"role": "user", "content": f"prompt of {row_id}"}],
        "harmful": harmful,
        "categories": [c for c, level in severity.items() if level > 0],
        "severity": severity,
    }


def test_hand_written_rows_join_with_labels_from_known_severity(tmp_path: Path) -> None:
    """Harmful examples are labelled by their severity against the policy; low hard negatives are left out."""
    rows = [
        _row("harmful-examples:weapons", "harmful-examples", harmful=True, severity={"weapons": 3}),
        # general-assistant allows profanity up to moderate: a moderate reply is harmful in general but allowed here.
        _row("harmful-examples:swearing", "harmful-examples", harmful=True, severity={"profanity": 2}),
        _row(
            "harmful-examples:train", "harmful-examples", harmful=True, severity={"weapons": 3}, split="train"
        ),
        _row("hard-negatives:harmless", "hard-negatives", harmful=False, severity={"weapons": 0}),
        _row("hard-negatives:low", "hard-negatives", harmful=False, severity={"violence": 1}),
        _row("toxicchat:1", "toxicchat", harmful=True, severity={}),
        _row("beavertails:1", "beavertails", harmful=True, severity={}),
    ]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "clauses.jsonl").write_text("", encoding="utf-8")

    labels = {row.id: row.label for row in fitting_rows(tmp_path, POLICY)}

    assert labels == {
        "toxicchat:1": 1,
        "hard-negatives:harmless": 0,
        "harmful-examples:weapons": 1,
        "harmful-examples:swearing": 0,
    }
