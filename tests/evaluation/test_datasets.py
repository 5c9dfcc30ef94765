"""Benchmark loaders: generated (configurable-dev, pairs-dev) and hand-written (handwritten, rules-dev) rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csrm_guard.errors import DataError
from csrm_guard.evaluation.datasets import (
    load_benchmark,
    load_configurable_dev,
    load_handwritten,
    load_pairs_dev,
    load_rules_dev,
)

POLICY = {"api_version": "csrm-guard/v1", "name": "shop", "version": "1",
          "rules": [{"id": "no-prices", "text": "Do not give prices.", "stages": ["output"]}]}  # fmt: skip
MESSAGES = [{"role": "user", "content": "How much is the blue kettle?"}]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class TestGenerated:
    def test_configurable_dev_splits_off_the_response(self, tmp_path):
        """An output row's judged response is separated from the context messages."""
        row = {"id": "x#h0", "conversation_id": "c1", "source": "s", "stage": "output", "label": 1,
               "clause": "Rule: Do not give prices.", "clause_kind": "rule", "category": None,
               "transcript": "User: ...", "phrasing": "rule:price/t4", "augmentation": "cca:rule",
               "messages": [*MESSAGES, {"role": "assistant", "content": "It is $20."}]}  # fmt: skip
        _jsonl(tmp_path / "benchmarks" / "configurable-dev.jsonl", [row])
        (example,) = load_configurable_dev(tmp_path)
        assert example.response == "It is $20."
        assert example.messages == tuple(MESSAGES)
        assert (example.label, example.meta["phrasing"]) == (1, "rule:price/t4")

    def test_pairs_dev(self, tmp_path):
        """Pairs keep both responses and their transcripts."""
        row = {
            "id": "p:1",
            "conversation_id": "c",
            "source": "pku-saferlhf",
            "messages": MESSAGES,
            "safer": "No.",
            "less_safe": "Yes.",
            "clause": "Rule: x",
            "transcript_safer": "a",
            "transcript_less_safe": "b",
        }
        _jsonl(tmp_path / "benchmarks" / "pairs-dev.jsonl", [row])
        (pair,) = load_pairs_dev(tmp_path)
        assert (pair.safer, pair.less_safe) == ("No.", "Yes.")

    def test_missing_field_names_file_and_line(self, tmp_path):
        """A row without a label is reported with its file and line."""
        _jsonl(
            tmp_path / "benchmarks" / "configurable-dev.jsonl",
            [{"id": "x", "stage": "input", "messages": []}],
        )
        with pytest.raises(DataError, match=r"configurable-dev\.jsonl:1: missing field 'label'"):
            load_configurable_dev(tmp_path)


class TestHandWritten:
    def test_handwritten_loads_the_deployment_policy(self, tmp_path):
        """A handwritten row is paired with its deployment policy and a 0/1 label."""
        deployments = tmp_path / "handwritten" / "deployments"
        deployments.mkdir(parents=True)
        (deployments / "shop.yaml").write_text(json.dumps(POLICY), encoding="utf-8")
        _jsonl(tmp_path / "handwritten-v1.jsonl", [
            {"id": "hw-1", "deployment": "shop", "messages": MESSAGES, "response": "It is $20.", "stage": "output",
             "label": "violation", "violated": ["no-prices"], "kind": "business-rule", "rationale": "a price"},
        ])  # fmt: skip
        (example,) = load_handwritten(tmp_path)
        assert example.policy is not None
        assert example.policy.name == "shop"
        assert (example.label, example.violated, example.meta["rationale"]) == (1, ("no-prices",), "a price")

    def test_rules_dev_inline_policy_and_bad_label(self, tmp_path):
        """rules-dev rows carry inline policies; a label other than PASS/FAIL is rejected."""
        row = {
            "id": "r-1",
            "policy": POLICY,
            "messages": MESSAGES,
            "response": "Ask in store.",
            "label": "PASS",
            "violated_rules": [],
            "relevant_rules": ["no-prices"],
        }
        _jsonl(tmp_path / "rules-dev-v1.jsonl", [row, {**row, "id": "r-2", "label": "OK"}])
        with pytest.raises(DataError, match=r":2: label must be 'FAIL' or 'PASS'"):
            load_rules_dev(tmp_path)
        _jsonl(tmp_path / "rules-dev-v1.jsonl", [row])
        (example,) = load_rules_dev(tmp_path)
        assert example.label == 0
        assert example.meta["relevant_rules"] == ["no-prices"]

    def test_invalid_inline_policy(self, tmp_path):
        """An invalid inline policy becomes a DataError naming the row."""
        row = {
            "id": "r-1",
            "policy": {"name": "x", "bogus": 1},
            "messages": MESSAGES,
            "response": "r",
            "label": "PASS",
        }
        _jsonl(tmp_path / "rules-dev-v1.jsonl", [row])
        with pytest.raises(DataError, match="inline policy is invalid"):
            load_rules_dev(tmp_path)


def test_unknown_benchmark():
    """An unknown benchmark name lists the valid ones."""
    with pytest.raises(DataError, match="configurable-dev"):
        load_benchmark("nope")


@pytest.mark.skipif(
    not Path("benchmarks/handwritten-v1.jsonl").is_file(), reason="run from the repository root"
)
def test_repository_handwritten_set_loads():
    """The committed handwritten benchmark loads with every deployment policy."""
    examples = load_handwritten(Path("benchmarks"))
    assert len({e.meta["deployment"] for e in examples}) >= 6
    assert {e.label for e in examples} == {0, 1}
