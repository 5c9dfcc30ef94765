"""Recall of the BM25 clause pre-filter (csrm_guard.model.retrieve) on labelled benchmarks.

For every labelled row whose violated clauses include custom rules, the pre-filter ranks a long clause list
against the rendered transcript; recall@k is the share of violated rules among the top k.

* ``handwritten``: benchmarks/handwritten-v1.jsonl. The clause list is every rule of every deployment (32 rules)
  plus every guideline clause split from the deployments' natural-language .md files (the distractors a long
  policy brings), so each row's own rules compete with about 200 others.
* ``rules-dev``: benchmarks/rules-dev-v1.jsonl (DynaBench-style): each row's own policy (10-11 rules), and
  the pool of every rules-dev policy's rules (about 130), which is what a 50-200 clause policy looks like.

Usage: python scripts/retrieval_recall.py [--k 1,3,5,10,20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from csrm_guard.model.retrieve import ClauseIndex, recall_at_k
from csrm_guard.policy import load_policy
from csrm_guard.policy.render import (
    render_guideline_clause,
    render_rule_clause,
    render_transcript,
    split_guidelines,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _transcript(row: dict[str, Any]) -> str:
    stage = row.get("stage") or ("output" if row.get("response") else "input")
    return render_transcript(row["messages"], stage=stage, response=row.get("response"))


def handwritten() -> Iterable[tuple[str, list[str], list[int]]]:
    """(transcript, clause texts, indices of violated rules) for each handwritten row that violates a rule."""
    folder = BENCH / "handwritten" / "deployments"
    ids: list[str] = []
    texts: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        policy = load_policy(path)
        for rule in policy.rules:
            ids.append(f"{path.stem}/{rule.id}")
            texts.append(render_rule_clause(rule.text))
    for path in sorted(folder.glob("*.md")):
        for piece in split_guidelines(path.read_text(encoding="utf-8")):
            ids.append(f"{path.stem}/guideline")
            texts.append(render_guideline_clause(piece))
    for line in (BENCH / "handwritten-v1.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        wanted = {f"{row['deployment']}/{clause}" for clause in row["violated"]}
        relevant = [index for index, name in enumerate(ids) if name in wanted]
        if relevant:
            yield _transcript(row), texts, relevant


def _rules_dev_rows() -> list[dict[str, Any]]:
    path = BENCH / "rules-dev-v1.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rules_dev(*, pooled: bool, field: str = "violated_rules") -> Iterable[tuple[str, list[str], list[int]]]:
    """(transcript, clause texts, indices of the labelled rules) per rules-dev row.

    Args:
        pooled: Rank every rule of every rules-dev policy (about 130), not only the row's own policy.
        field: ``violated_rules`` (FAIL rows) or ``relevant_rules`` (rules a reviewer marked as in play).
    """
    rows = _rules_dev_rows()
    pool: dict[str, str] = {}
    for row in rows:
        for rule in row["policy"]["rules"]:
            pool.setdefault(f"{row['policy']['name']}/{rule['id']}", render_rule_clause(rule["text"]))
    for row in rows:
        own = {
            f"{row['policy']['name']}/{rule['id']}": render_rule_clause(rule["text"])
            for rule in row["policy"]["rules"]
        }
        clauses = pool if pooled else own
        names = list(clauses)
        wanted = {f"{row['policy']['name']}/{rule}" for rule in row.get(field) or []}
        relevant = [index for index, name in enumerate(names) if name in wanted]
        if relevant:
            yield _transcript(row), list(clauses.values()), relevant


def measure(rows: Iterable[tuple[str, list[str], list[int]]], ks: list[int]) -> dict[str, Any]:
    """Mean recall@k over rows, and the mean number of clauses per row."""
    totals = dict.fromkeys(ks, 0.0)
    count = clauses = 0
    cache: dict[tuple[str, ...], ClauseIndex] = {}
    for transcript, texts, relevant in rows:
        index = cache.setdefault(tuple(texts), ClauseIndex(texts))
        for k in ks:
            totals[k] += recall_at_k(index, transcript, relevant, k)
        count += 1
        clauses += len(texts)
    return {
        "rows": count,
        "clauses_per_row": clauses / count if count else 0,
        "recall": {k: totals[k] / count if count else None for k in ks},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="1,3,5,10,20")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    results = {
        "handwritten, pooled deployments + guidelines": measure(handwritten(), ks),
        "rules-dev violated, own policy": measure(rules_dev(pooled=False), ks),
        "rules-dev violated, pooled policies": measure(rules_dev(pooled=True), ks),
        "rules-dev relevant, pooled policies": measure(rules_dev(pooled=True, field="relevant_rules"), ks),
    }
    for name, result in results.items():
        recall = ", ".join(f"@{k}={value:.3f}" for k, value in result["recall"].items() if value is not None)
        print(
            f"{name}: {result['rows']} rows, {result['clauses_per_row']:.0f} clauses/row, recall {recall or 'n/a'}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
