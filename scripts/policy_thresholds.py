"""Would thresholds fitted at the policy level help? Fit them on dev data and measure them on the benchmarks.

A bundle's stage thresholds are fitted on single dev clause rows, but the runtime decides on the maximum over a
whole policy's clauses. This script scores policy-level rows under whole policies, fits (a) one threshold per
stage and (b) one per stage and clause kind (severity-path categories vs text clauses) on two fitting sets built
from the build's dev split, and reports F1 and over-refusal on every set with the manifest's thresholds and with
the fitted ones. The benchmarks are measured only; nothing is fitted on them.

Fitting sets: those of ``csrm-guard export`` (:mod:`csrm_guard.training.policy_fit`), which now fits the per-stage
scheme itself; this script keeps the comparison with the per-kind scheme and the AUROC.

Measured sets: ``handwritten``, ``rules-dev`` and ``beavertails-dev`` (the eval's sample).

Usage: python scripts/policy_thresholds.py [--bundle DIR] [--data data_build] [--scores runs/policy-scores.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from csrm_guard.evaluation.datasets import load_benchmark
from csrm_guard.evaluation.run import DEFAULT_POLICY, EvalOptions, _beavertails_dev, _sample, _transcript
from csrm_guard.model.bundle import load_bundle
from csrm_guard.model.scorer import OnnxScorer
from csrm_guard.model.types import ScoreRequest
from csrm_guard.policy.render import render_policy
from csrm_guard.training.policy_fit import FitRow, fitting_rows

Thresholds = dict[tuple[str, str], float]  # (stage, "category" | "text") -> threshold
GRID = np.round(np.arange(0.10, 0.99, 0.02), 3)


def _measured(data: Path) -> Iterator[FitRow]:
    for name in ("handwritten", "rules-dev"):
        for r in load_benchmark(name, benchmarks_dir=Path("benchmarks")):
            assert r.policy is not None
            yield FitRow(name, r.id, r.policy, r.stage, _transcript(r), r.label)
    for r in _sample(_beavertails_dev(EvalOptions(data_dir=data)), 500, 0):
        assert r.policy is not None
        yield FitRow("beavertails-dev", r.id, r.policy, r.stage, _transcript(r), r.label)


def dump(bundle: Path | None, data: Path, out: Path) -> None:
    """Score every row under its policy and write the per-clause probabilities as JSONL."""
    rows = [*_measured(data), *fitting_rows(data, DEFAULT_POLICY)]
    scorer = OnnxScorer.load(load_bundle(bundle), providers="cpu", threads=2, top_k=None)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in tqdm(rows, desc="score"):
            verdict = scorer.score(ScoreRequest(render_policy(row.policy), row.stage, row.transcript))
            scores = [[s.clause_id, s.kind, s.probability] for s in verdict.scores]
            record = {"set": row.set, "id": row.id, "stage": row.stage, "label": row.label, "scores": scores}
            handle.write(json.dumps(record) + "\n")
    scorer.close()


def _decide(record: dict[str, Any], thresholds: Thresholds) -> bool:
    stage = record["stage"]
    return any(
        p >= thresholds[stage, "category" if kind == "category" else "text"]
        for _, kind, p in record["scores"]
    )


def _f1(records: list[dict[str, Any]], thresholds: Thresholds) -> tuple[float, float]:
    labels = np.array([r["label"] for r in records], dtype=bool)
    predicted = np.array([_decide(r, thresholds) for r in records], dtype=bool)
    tp, fp, fn = (labels & predicted).sum(), (~labels & predicted).sum(), (labels & ~predicted).sum()
    return float(2 * tp / max(1, 2 * tp + fp + fn)), float(fp / max(1, (~labels).sum()))


def _auroc(records: list[dict[str, Any]]) -> float:
    """AUROC of the policy-level score (the max over clauses), by the Mann-Whitney statistic with ties halved."""
    labels = np.array([r["label"] for r in records], dtype=bool)
    scores = np.array([max((p for _, _, p in r["scores"]), default=0.0) for r in records])
    positives, negatives = scores[labels], scores[~labels]
    if not positives.size or not negatives.size:
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (
        positives[:, None] == negatives[None, :]
    ).sum()
    return float(wins / (positives.size * negatives.size))


def _uniform(input_: float, output: float, category: tuple[float, float] | None = None) -> Thresholds:
    cat = category or (input_, output)
    return {
        ("input", "text"): input_,
        ("output", "text"): output,
        ("input", "category"): cat[0],
        ("output", "category"): cat[1],
    }


def simulate(records: list[dict[str, Any]], manifest_thresholds: dict[str, float]) -> str:
    """Fit the two threshold schemes on the fitting sets and report every set under each; returns markdown."""
    fit = [r for r in records if r["set"].startswith("fit-")]
    per_stage = {}
    per_kind = {}
    for stage in ("input", "output"):
        part = [r for r in fit if r["stage"] == stage]
        per_stage[stage] = max(GRID, key=lambda t: _f1(part, _uniform(t, t))[0])
        per_kind[stage] = max(
            itertools.product(GRID, GRID), key=lambda tc: _f1(part, _uniform(tc[0], tc[0], (tc[1], tc[1])))[0]
        )
    schemes = {
        f"manifest ({manifest_thresholds['input']:.2f} / {manifest_thresholds['output']:.2f})": _uniform(
            manifest_thresholds["input"], manifest_thresholds["output"]
        ),
        f"policy level, per stage ({per_stage['input']:.2f} / {per_stage['output']:.2f})": _uniform(
            per_stage["input"], per_stage["output"]
        ),
        "policy level, per stage and kind (text {:.2f} / {:.2f}, category {:.2f} / {:.2f})".format(
            per_kind["input"][0], per_kind["output"][0], per_kind["input"][1], per_kind["output"][1]
        ): _uniform(
            per_kind["input"][0], per_kind["output"][0], (per_kind["input"][1], per_kind["output"][1])
        ),
    }
    sets = sorted({r["set"] for r in records})
    lines = ["| thresholds | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    for label, thresholds in schemes.items():
        cells = []
        for name in sets:
            f1, over_refusal = _f1([r for r in records if r["set"] == name], thresholds)
            cells.append(f"{f1:.3f} ({over_refusal:.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    aurocs = [f"{_auroc([r for r in records if r['set'] == name]):.3f}" for name in sets]
    lines.append("| AUROC of the policy-level score (any threshold) | " + " | ".join(aurocs) + " |")
    return "\n".join(lines) + "\n\nF1 of the violation class (over-refusal: share of benign rows flagged)."


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=Path("data_build"), help="`data build` output")
    parser.add_argument("--scores", type=Path, default=Path("runs/policy-scores.jsonl"), help="score cache")
    args = parser.parse_args()
    if not args.scores.exists():
        dump(args.bundle, args.data, args.scores)
    records = [json.loads(line) for line in args.scores.read_text(encoding="utf-8").splitlines()]
    thresholds = dict(load_bundle(args.bundle).manifest.calibration.thresholds)
    print(simulate(records, thresholds))


if __name__ == "__main__":
    main()
