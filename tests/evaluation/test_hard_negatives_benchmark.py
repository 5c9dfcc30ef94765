"""Tests for the ``hard-negatives-test`` and ``harmful-examples-test`` benchmarks: rows, labels and metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csrm_guard.evaluation.run import (
    HARD_NEGATIVES,
    HARMFUL_EXAMPLES,
    EvalOptions,
    _binary_values,
    _load_rows,
)
from csrm_guard.evaluation.runner import Scored
from csrm_guard.training import harmful_examples
from csrm_guard.training.data import conversation_id, split_of
from csrm_guard.training.hard_negatives import SOURCE

REPO = Path(__file__).resolve().parents[2]


def _prompt_in(split: str) -> str:
    return next(f"question {n}?" for n in range(1000) if split_of(conversation_id(f"question {n}?")) == split)


def _example(
    prompt: str, stage: str, categories: list[str], split: str, source: str = SOURCE
) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    if stage == "output":
        messages.append({"role": "assistant", "content": "An answer."})
    return {
        "id": f"{source}:{prompt}:{stage}",
        "source": source,
        "split": split,
        "stage": stage,
        "messages": messages,
        "harmful": False,
        "categories": categories,
        "severity": dict.fromkeys(categories, 1),  # a hard negative's categories sit at low
    }


def test_rows_are_test_split_items_labelled_by_the_default_policy(tmp_path: Path) -> None:
    """Only test-split hard negatives load; low items violate only categories general-assistant keeps at none."""
    test, dev = _prompt_in("test"), _prompt_in("dev")
    rows = [
        _example(test, "input", [], "test"),
        _example(test, "output", [], "test"),
        _example(
            test + " harassment", "output", ["harassment"], "test"
        ),  # general-assistant: harassment none
        _example(test + " violence", "output", ["violence"], "test"),  # general-assistant: violence low
        _example(dev, "input", [], "dev"),
        _example(test + " other", "input", [], "test", source="toxicchat"),
    ]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    options = EvalOptions(data_dir=tmp_path, benchmarks_dir=REPO / "benchmarks")

    loaded = {row.id: row for row in _load_rows("hard-negatives-test", options)}

    assert HARD_NEGATIVES == SOURCE
    assert sorted(loaded) == sorted(r["id"] for r in rows[:4])
    labels = {row_id: row.label for row_id, row in loaded.items()}
    assert list(labels.values()) == [0, 0, 1, 0]
    first_input, first_output = loaded[rows[0]["id"]], loaded[rows[1]["id"]]
    assert (first_input.response, first_input.messages[-1]["content"]) == (None, test)
    assert (first_output.response, first_output.messages[-1]["content"]) == ("An answer.", test)
    assert {row.kind for row in loaded.values()} == {"harmless", "low"}
    assert all(row.policy is not None and row.policy.name == "general-assistant" for row in loaded.values())


def test_harmful_examples_are_labelled_by_severity_against_the_default_policy(tmp_path: Path) -> None:
    """A harmful turn violates where its severity exceeds what general-assistant allows; its partner turn does not."""
    test = _prompt_in("test")

    def harmful(stage: str, severity: dict[str, int]) -> dict[str, Any]:
        row = _example(f"{test} {severity}", stage, list(severity), "test", source=HARMFUL_EXAMPLES)
        return {**row, "harmful": True, "severity": severity}

    rows = [
        harmful("input", {"weapons": 3}),  # general-assistant allows weapons up to low
        harmful("output", {"violence": 1}),  # violence up to low: allowed
        harmful("output", {"profanity": 2, "harassment": 1}),  # harassment: none allowed
        {**_example(test, "output", [], "test", source=HARMFUL_EXAMPLES), "severity": {"weapons": 0}},
    ]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    options = EvalOptions(data_dir=tmp_path, benchmarks_dir=REPO / "benchmarks")

    loaded = {row.id: row for row in _load_rows("harmful-examples-test", options)}

    assert HARMFUL_EXAMPLES == harmful_examples.SOURCE
    assert [loaded[r["id"]].label for r in rows] == [1, 0, 1, 0]
    assert {row.benchmark for row in loaded.values()} == {"harmful-examples-test"}
    assert [loaded[r["id"]].kind for r in rows] == [
        "input:harmful",
        "output:harmful",
        "output:harmful",
        "output:harmless",
    ]


def test_rows_without_a_violation_report_over_refusal_and_no_f1() -> None:
    """With no violation among the rows, F1, precision and recall are undefined (nan), over-refusal is not."""
    scored = Scored(np.array([0.9, 0.2, 0.6, 0.1]), np.array([0.5, 0.5, 0.7, 0.05]), np.zeros(4))
    values = _binary_values(np.zeros(4, dtype=np.int64), scored)
    assert all(math.isnan(values[key]) for key in ("f1", "precision", "recall", "auprc"))
    assert values["over_refusal"] == pytest.approx(0.5)  # 0.9 >= 0.5 and 0.1 >= 0.05 flagged
