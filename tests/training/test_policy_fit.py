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


def _scenario(row_id: str, rule: str, label: int, augmentation: str = "scn:violated") -> dict[str, Any]:
    return {
        "id": row_id,
        "source": "scenarios",
        "stage": "output",
        "clause": f"Rule: {rule}",
        "transcript": f"transcript of {row_id}",
        "label": label,
        "augmentation": augmentation,
    }


def test_scenario_rows_carry_their_rule_and_other_families_rules(tmp_path: Path) -> None:
    """Each scenario row's policy holds its own rule plus one rule of each of up to N other families."""
    rows = [
        _scenario("scenario:alpha_one:000", "Alpha rule.", 1),
        _scenario("scenario:alpha_one:001", "Alpha rule, reworded.", 0, "scn:compliant"),
        _scenario("scenario:beta_two:000", "Beta rule.", 1),
        _scenario("scenario:gamma_three:000", "Gamma rule.", 0, "scn:compliant"),
        _scenario("scenario:delta_four:000", "Delta rule.", 1),
        # An other-rule row: delta's transcript under gamma's rule; gamma is then not picked again.
        _scenario("scenario:delta_four:o000", "Gamma rule.", 0, "scn:other_rule"),
    ]
    (tmp_path / "examples.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "clauses.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )

    fitted = {row.id: row for row in fitting_rows(tmp_path, POLICY, other_rules=2)}

    assert {row_id: row.label for row_id, row in fitted.items()} == {r["id"]: r["label"] for r in rows}
    for source in rows:
        custom = [rule for rule in fitted[source["id"]].policy.rules if rule.id.startswith("scenario-rule")]
        texts = [rule.text for rule in custom]
        assert texts[0] == source["clause"].removeprefix("Rule: ")
        assert len(texts) == 3
        # One rule per family, never the row's own family (or, for an other-rule row, its clause's family) again.
        assert len({text.split()[0] for text in texts}) == 3
    other = [rule.text for rule in fitted["scenario:delta_four:o000"].policy.rules][-2:]
    assert not any(text.startswith(("Gamma", "Delta")) for text in other)
    again = fitting_rows(tmp_path, POLICY, other_rules=2)
    assert again == list(fitted.values())  # seeded: the same rules every time
