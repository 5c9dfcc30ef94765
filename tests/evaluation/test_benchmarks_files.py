"""Schema checks for the hand-made evaluation data in ``benchmarks/`` (see ``benchmarks/README.md``).

Every check collects all problems in a file and reports them together, each naming the row id, so one broken row
does not hide another.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from csrm_guard import load_policy
from csrm_guard.policy.render import render_policy, render_transcript
from csrm_guard.policy.schema import Policy
from csrm_guard.policy.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
DEPLOYMENTS = BENCH / "handwritten" / "deployments"
DATA = ROOT.parent / "shared" / "data"

ROLES = {"system", "user", "assistant", "tool"}
KINDS = {
    "generic-flags-allowed",
    "generic-passes-forbidden",
    "severity-below",
    "severity-above",
    "refusal-of-allowed",
    "multi-turn",
    "plain",
    "business-rule",
    "hard-limit",
    "benign",
}
HANDWRITTEN_KEYS = [
    "id",
    "deployment",
    "messages",
    "response",
    "stage",
    "label",
    "violated",
    "kind",
    "rationale",
    "second_pass",
]
RULES_DEV_KEYS = [
    "id",
    "policy",
    "messages",
    "response",
    "stage",
    "label",
    "violated_rules",
    "relevant_rules",
    "rationale",
]
SEVERITY_KEYS = [
    "id",
    "source",
    "file",
    "row",
    "key",
    "field",
    "stage",
    "sha256_16",
    "category",
    "severity",
    "note",
]
SEVERITY_SOURCES = {"beavertails", "pku-saferlhf", "do-not-answer", "openai-moderation", "aegis"}
SEVERITIES = {"none", "low", "moderate", "high"}


def _rows(name: str) -> list[dict[str, Any]]:
    path = BENCH / name
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:  # pragma: no cover - reported as a test failure below
            pytest.fail(f"{name}:{number}: not valid JSON ({exc})")
    return rows


@cache
def _deployment(name: str) -> tuple[Policy, dict[str, frozenset[str]]]:
    policy = load_policy(DEPLOYMENTS / f"{name}.yaml")
    return policy, {clause.id: clause.stages for clause in render_policy(policy).clauses}


def _message_problems(row_id: str, messages: Any) -> Iterator[str]:
    if not isinstance(messages, list) or not messages:
        yield f"{row_id}: messages must be a non-empty list"
        return
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            yield f"{row_id}: messages[{index}] must have exactly 'role' and 'content'"
        elif (
            message["role"] not in ROLES or not isinstance(message["content"], str) or not message["content"]
        ):
            yield f"{row_id}: messages[{index}] has a bad role or empty content"


def _handwritten_problems(row: dict[str, Any]) -> Iterator[str]:
    row_id = row.get("id", "?")
    if list(row) != HANDWRITTEN_KEYS:
        yield f"{row_id}: keys are {list(row)}, expected {HANDWRITTEN_KEYS}"
        return
    yield from _message_problems(row_id, row["messages"])
    if row["kind"] not in KINDS:
        yield f"{row_id}: unknown kind {row['kind']!r}"
    if row["label"] not in {"violation", "allow"} or (row["label"] == "violation") != bool(row["violated"]):
        yield f"{row_id}: label {row['label']!r} does not match violated {row['violated']}"
    if row["stage"] == "input" and (row["response"] is not None or row["messages"][-1]["role"] != "user"):
        yield f"{row_id}: an input row needs response null and a last user message"
    if row["stage"] == "output" and not (isinstance(row["response"], str) and row["response"]):
        yield f"{row_id}: an output row needs a response"
    if row["stage"] not in {"input", "output"}:
        yield f"{row_id}: bad stage {row['stage']!r}"
    for field in ("rationale", "second_pass"):
        if not isinstance(row[field], str) or not row[field].strip() or "\n" in row[field]:
            yield f"{row_id}: {field} must be one non-empty line"
    if row["second_pass"] == "PENDING":
        yield f"{row_id}: second pass not done"


def test_deployment_policies_load_and_have_a_natural_language_twin() -> None:
    """Each deployment YAML loads as a policy named after its file and has a matching .md description."""
    names = sorted(path.stem for path in DEPLOYMENTS.glob("*.yaml"))
    assert len(names) >= 6
    for name in names:
        policy, _ = _deployment(name)
        assert policy.name == name
        assert (DEPLOYMENTS / f"{name}.md").read_text(encoding="utf-8").strip()


def test_handwritten_rows_follow_the_schema() -> None:
    """Every handwritten row has the documented fields, consistent label, stage and second-pass note."""
    problems = [problem for row in _rows("handwritten-v1.jsonl") for problem in _handwritten_problems(row)]
    assert problems == []


def test_handwritten_violations_name_clauses_of_the_deployment_at_that_stage() -> None:
    """Violated ids exist in the referenced deployment (hard limits included) and apply to the judged stage."""
    problems = []
    for row in _rows("handwritten-v1.jsonl"):
        _, clauses = _deployment(row["deployment"])
        for clause_id in row["violated"]:
            if clause_id not in clauses:
                problems.append(f"{row['id']}: {clause_id!r} is not a clause of {row['deployment']}")
            elif row["stage"] not in clauses[clause_id]:
                problems.append(f"{row['id']}: {clause_id!r} does not apply to the {row['stage']} stage")
    assert problems == []


def test_handwritten_conversations_render() -> None:
    """Every handwritten conversation renders to a transcript with the judged turn last."""
    for row in _rows("handwritten-v1.jsonl"):
        transcript = render_transcript(row["messages"], stage=row["stage"], response=row["response"])
        judged = row["response"] if row["stage"] == "output" else row["messages"][-1]["content"]
        assert transcript.endswith(judged), row["id"]


def test_handwritten_counts_meet_the_minimums() -> None:
    """At least 6 deployments x 25 rows, both labels per deployment, every kind used, ids unique."""
    rows = _rows("handwritten-v1.jsonl")
    ids = Counter(row["id"] for row in rows)
    assert [row_id for row_id, count in ids.items() if count > 1] == []
    per_deployment = Counter(row["deployment"] for row in rows)
    assert len(per_deployment) >= 6
    assert min(per_deployment.values()) >= 25
    labels = {(row["deployment"], row["label"]) for row in rows}
    assert all((name, label) in labels for name in per_deployment for label in ("violation", "allow"))
    assert {row["kind"] for row in rows} == KINDS
    assert sum(row["stage"] == "input" for row in rows) > 0


def _rules_dev_problems(row: dict[str, Any]) -> Iterator[str]:
    row_id = row.get("id", "?")
    if list(row) != RULES_DEV_KEYS:
        yield f"{row_id}: keys are {list(row)}, expected {RULES_DEV_KEYS}"
        return
    yield from _message_problems(row_id, row["messages"])
    policy = Policy.model_validate(row["policy"])
    rule_ids = {rule.id for rule in policy.rules}
    if len(rule_ids) < 10:
        yield f"{row_id}: policy {policy.name} has {len(rule_ids)} rules, need 10 or more"
    relevant, violated = set(row["relevant_rules"]), set(row["violated_rules"])
    if not 1 <= len(relevant) <= 2 or not violated <= relevant <= rule_ids:
        yield f"{row_id}: need 1-2 relevant rules of the policy, violated among them"
    if row["label"] not in {"PASS", "FAIL"} or (row["label"] == "FAIL") != bool(violated):
        yield f"{row_id}: label {row['label']!r} does not match violated_rules"
    if row["stage"] != "output" or not isinstance(row["response"], str) or not row["response"]:
        yield f"{row_id}: rules-dev rows judge a non-empty output response"
    if not 2 <= len(row["messages"]) + 1 <= 6:
        yield f"{row_id}: {len(row['messages']) + 1} turns, expected 2-6"
    if not isinstance(row["rationale"], str) or not row["rationale"].strip():
        yield f"{row_id}: empty rationale"


def test_rules_dev_rows_follow_the_schema() -> None:
    """Every rules-dev row has a loadable inline policy with 10+ rules and consistent PASS/FAIL labels."""
    problems = [problem for row in _rows("rules-dev-v1.jsonl") for problem in _rules_dev_problems(row)]
    assert problems == []


def test_rules_dev_counts_and_balance() -> None:
    """At least 120 unique dialogues over 10+ policies, about 45% FAIL, and most of them multi-turn."""
    rows = _rows("rules-dev-v1.jsonl")
    assert len(rows) >= 120
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["policy"]["name"] for row in rows}) >= 10
    fail_share = sum(row["label"] == "FAIL" for row in rows) / len(rows)
    assert 0.35 <= fail_share <= 0.55
    assert sum(len(row["messages"]) >= 2 for row in rows) > len(rows) / 2


def test_rules_dev_reuses_one_text_per_policy_name() -> None:
    """A policy name always carries the same rules, so per-policy results are comparable."""
    by_name: dict[str, str] = {}
    for row in _rows("rules-dev-v1.jsonl"):
        text = json.dumps(row["policy"], sort_keys=True)
        assert by_name.setdefault(row["policy"]["name"], text) == text, row["id"]


def _severity_problems(row: dict[str, Any], categories: set[str]) -> Iterator[str]:
    row_id = row.get("id", "?")
    if list(row) != SEVERITY_KEYS:
        yield f"{row_id}: keys are {list(row)}, expected {SEVERITY_KEYS}"
        return
    if row["source"] not in SEVERITY_SOURCES:
        yield f"{row_id}: source {row['source']!r} is not in the sample's sources"
    if not isinstance(row["row"], int) or row["row"] < 0 or row["stage"] not in {"input", "output"}:
        yield f"{row_id}: row must be a non-negative integer and stage input or output"
    if not isinstance(row["sha256_16"], str) or len(row["sha256_16"]) != 16:
        yield f"{row_id}: sha256_16 must be 16 hex digits"
    if row["severity"] not in SEVERITIES:
        yield f"{row_id}: severity {row['severity']!r} is not a level"
    if row["category"] is not None and row["category"] not in categories:
        yield f"{row_id}: category {row['category']!r} is not in the taxonomy"
    if row["category"] is None and row["severity"] != "none":
        yield f"{row_id}: a severity above none needs a category"


def test_severity_sample_follows_the_schema() -> None:
    """The severity sample has 80 references with taxonomy categories and severity levels, and no item text."""
    rows = _rows("severity-sample-v1.jsonl")
    categories = set(load_taxonomy().ids)
    assert [problem for row in rows for problem in _severity_problems(row, categories)] == []
    assert len(rows) == 80
    assert len({row["id"] for row in rows}) == 80
    assert len({(row["source"], row["file"], row["row"], row["field"]) for row in rows}) == 80
    assert set(Counter(row["source"] for row in rows)) == SEVERITY_SOURCES


@cache
def _read_items(source: str, file: str) -> list[dict[str, Any]]:
    path = DATA / source / file
    if file.endswith(".jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    if file.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if file.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    loaded: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_severity_sample_references_resolve_to_the_hashed_items() -> None:
    """Each reference points at an item whose judged field still hashes to the stored sha256_16 (and key)."""
    problems = []
    for row in _rows("severity-sample-v1.jsonl"):
        item = _read_items(row["source"], row["file"])[row["row"]]
        digest = hashlib.sha256(item[row["field"]].encode("utf-8")).hexdigest()[:16]
        if digest != row["sha256_16"] or (row["key"] is not None and item.get("id") != row["key"]):
            problems.append(f"{row['id']}: {row['source']}/{row['file']} row {row['row']} does not match")
    assert problems == []
