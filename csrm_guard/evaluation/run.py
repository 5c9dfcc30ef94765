"""``csrm-guard eval``: score every benchmark with the CSRM bundle and the baselines, write the report.

Benchmarks (``--benchmark all`` runs each):

* ``configurable-dev``: clause-level rows (held-out conversations and phrasings), clause mode;
* ``clauses-test``: the clause rows of the build's *test* split, which calibration never saw (``configurable-dev``
  shares its conversations with the dev split that temperature and thresholds are fitted on);
* ``handwritten`` and ``rules-dev``: policy-level rows, scored through the runtime ``OnnxScorer``;
* ``beavertails-dev``: BeaverTails rows of the dev split under the default policy (``general-assistant``);
* ``hard-negatives-test``: the hand-written hard negatives of the *test* split (never trained or fitted on) under
  the default policy: a harmless item must be allowed; one at ``low`` severity is a violation only where the policy
  allows none of its category. Over-refusal is the figure to read;
* ``harmful-examples-test``: the hand-written harmful examples of the *test* split under the default policy: short
  plain requests and bad replies whose categories and severity are known; a turn is a violation where its severity
  exceeds what the policy allows in one of its categories (the refusals and harmless requests that go with them
  must be allowed). Recall is the figure to read;
* ``pairs-dev``: preference pairs; the less safe response must get the higher violation probability;
* ``strictness-dev``: clause ladders of the dev split; the stricter clause must get the higher probability
  (pair accuracy) and never a lower one (monotonicity violations).

Systems: the bundle, the keyword filter and, when ``--baseline-bundle`` is given, the unconditioned classifier.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from csrm_guard.errors import DataError
from csrm_guard.evaluation import metrics
from csrm_guard.evaluation.baselines import KeywordBaseline
from csrm_guard.evaluation.datasets import EvalExample, load_benchmark
from csrm_guard.evaluation.labels import exceeds_policy
from csrm_guard.evaluation.report import write_report
from csrm_guard.evaluation.runner import BundleRunner, Scored
from csrm_guard.policy import Policy, load_policy
from csrm_guard.policy.render import render_transcript

__all__ = [
    "ALL_BENCHMARKS",
    "HARD_NEGATIVES",
    "HARMFUL_EXAMPLES",
    "EvalOptions",
    "Result",
    "clause_row_example",
    "run_evaluation",
    "score_rows",
]

logger = logging.getLogger(__name__)

ALL_BENCHMARKS = (
    "configurable-dev",
    "clauses-test",
    "handwritten",
    "rules-dev",
    "beavertails-dev",
    "hard-negatives-test",
    "harmful-examples-test",
    "pairs-dev",
    "strictness-dev",
)
DEFAULT_POLICY = Path("policies/general-assistant/policy.yaml")
HARD_NEGATIVES = "hard-negatives"
"""The source of the hand-written hard negatives (``csrm_guard.training.hard_negatives.SOURCE``, which the
evaluation may not import)."""
HARMFUL_EXAMPLES = "harmful-examples"
"""The source of the hand-written harmful examples (``csrm_guard.training.harmful_examples.SOURCE``)."""


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """Options of ``csrm-guard eval`` (see the command's help)."""

    bundle: Path | None = None
    benchmark: str = "all"
    data_dir: Path = Path("data_build")
    baseline_bundle: Path | None = None
    limit: int | None = None
    out: Path | None = Path("docs/benchmarks.md")
    img_dir: Path = Path("docs/img")
    json_out: Path | None = None
    benchmarks_dir: Path = Path("benchmarks")
    seed: int = 0


@dataclass(slots=True)
class Result:
    """One (benchmark, system, slice) line of the report; ``curve`` keeps labels and probabilities for plots."""

    benchmark: str
    system: str
    slice: str
    values: dict[str, float]
    curve: tuple[NDArray[np.int64], NDArray[np.float64]] | None = field(default=None, repr=False)


System = tuple[str, Callable[[list[EvalExample]], Scored]]


def _sample(rows: list[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)  # noqa: S311 - evaluation sampling, not security


def _transcript(row: EvalExample) -> str:
    if row.transcript is not None:
        return row.transcript
    return render_transcript(list(row.messages), stage=row.stage, response=row.response)


def _systems(options: EvalOptions) -> list[tuple[str, Any]]:
    systems: list[tuple[str, Any]] = [("csrm", BundleRunner(options.bundle))]
    if options.baseline_bundle is not None:
        systems.append(("unconditioned", BundleRunner(options.baseline_bundle, unconditioned=True)))
    systems.append(("keyword", KeywordBaseline()))
    return systems


def score_rows(system: KeywordBaseline | BundleRunner, rows: Sequence[EvalExample]) -> Scored:
    """Score evaluation rows with a system (clause-level rows in clause mode, others through the policy)."""
    transcripts = [_transcript(row) for row in rows]
    if isinstance(system, KeywordBaseline):
        return system.score(transcripts)
    stages = [row.stage for row in rows]
    if all(row.clause is not None for row in rows):
        return system.clause_probabilities([row.clause or "" for row in rows], transcripts, stages)
    policies = [row.policy for row in rows]
    if any(policy is None for policy in policies):
        raise DataError("a benchmark mixes clause-level and policy-level rows")
    return system.policy_scores([p for p in policies if p is not None], stages, transcripts)


def _binary_values(labels: NDArray[np.int64], scored: Scored) -> dict[str, float]:
    predicted = (scored.probabilities >= scored.thresholds).astype(np.float64)
    # thresholds differ per row (stage), so score the 0/1 decisions at 0.5
    binary = metrics.binary_scores(labels, predicted, 0.5)
    # Without a violation among the rows (hard-negatives-test, some slices) F1, precision and recall are undefined;
    # over-refusal is the figure there.
    undefined = binary.positives == 0
    return {
        "n": float(labels.size),
        "positives": float(binary.positives),
        "f1": math.nan if undefined else binary.f1,
        "precision": math.nan if undefined else binary.precision,
        "recall": math.nan if undefined else binary.recall,
        "auprc": metrics.auprc(labels, scored.probabilities),
        "smece": metrics.smooth_ece(labels, scored.probabilities),
        "over_refusal": metrics.over_refusal_rate(labels, predicted, 0.5),
        "latency_ms": float(np.median(scored.latency_ms)) if scored.latency_ms.size else float("nan"),
    }


def _slices(rows: Sequence[EvalExample]) -> dict[str, NDArray[np.bool_]]:
    out = {"all": np.ones(len(rows), dtype=bool)}
    for key, values in (
        ("stage", [row.stage for row in rows]),
        ("source", [str(row.meta.get("source") or "") for row in rows]),
        ("kind", [str(row.kind or "") for row in rows]),
    ):
        for value in sorted(set(values) - {""}):
            out[f"{key}={value}"] = np.array([v == value for v in values])
    return out


def _labelled(name: str, rows: list[EvalExample], systems: list[tuple[str, Any]]) -> list[Result]:
    labels = np.array([row.label for row in rows], dtype=np.int64)
    slices = _slices(rows)
    results = []
    for system_name, system in systems:
        scored = score_rows(system, rows)
        for slice_name, mask in slices.items():
            if slice_name != "all" and system_name != "csrm":
                continue
            part = Scored(scored.probabilities[mask], scored.thresholds[mask], scored.latency_ms[mask])
            curve = (labels[mask], part.probabilities) if slice_name == "all" else None
            results.append(Result(name, system_name, slice_name, _binary_values(labels[mask], part), curve))
        logger.info(
            "%s / %s: %s", name, system_name, results[-len(slices) if system_name == "csrm" else -1].values
        )
    return results


def _examples(options: EvalOptions, source: str, split: str) -> Iterator[dict[str, Any]]:
    """The ``examples.jsonl`` rows of one source and split of the build."""
    path = options.data_dir / "examples.jsonl"
    if not path.exists():
        raise DataError("file not found (run `csrm-guard data build`)", source=str(path))
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if f'"{source}"' not in line:  # cheap pre-filter before parsing
                continue
            row = json.loads(line)
            if row.get("source") == source and row.get("split") == split:
                yield row


def _beavertails_dev(options: EvalOptions) -> list[EvalExample]:
    policy: Policy = load_policy(options.benchmarks_dir.parent / DEFAULT_POLICY)
    return [
        EvalExample(
            id=row["id"],
            benchmark="beavertails-dev",
            stage=row.get("stage", "output"),
            label=int(bool(row["harmful"])),
            messages=tuple(row["messages"][:-1]),
            response=row["messages"][-1]["content"],
            policy=policy,
            meta={"source": "beavertails"},
        )
        for row in _examples(options, "beavertails", "dev")
    ]


def _hand_written_test(options: EvalOptions, source: str) -> list[EvalExample]:
    """The test split of a hand-written source under the default policy.

    Their severity is known in every listed category, so the label follows from the policy: a turn is a violation
    where one of its categories is above what the policy allows (a hard negative at ``low`` severity only where the
    policy tolerates none of its category).
    """
    policy: Policy = load_policy(options.benchmarks_dir.parent / DEFAULT_POLICY)
    benchmark = f"{source}-test"
    rows = []
    for row in _examples(options, source, "test"):
        violated = exceeds_policy(policy, row["categories"], row["severity"])
        messages, stage = row["messages"], row["stage"]
        if source == HARD_NEGATIVES:
            kind = "low" if row["categories"] else "harmless"
        else:
            kind = f"{stage}:{'harmful' if row['categories'] else 'harmless'}"
        rows.append(
            EvalExample(
                id=row["id"],
                benchmark=benchmark,
                stage=stage,
                label=int(violated),
                messages=tuple(messages if stage == "input" else messages[:-1]),
                response=None if stage == "input" else messages[-1]["content"],
                policy=policy,
                kind=kind,
                meta={"source": source},
            )
        )
    return rows


def _preference_pairs(options: EvalOptions) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``pairs-dev``: the less safe response must get the higher violation probability."""
    loaded = load_benchmark("pairs-dev", build_dir=options.data_dir)
    pairs = _sample([p for p in loaded if not isinstance(p, EvalExample)], options.limit, options.seed)
    return [(p.clause, p.transcript_less_safe) for p in pairs], [
        (p.clause, p.transcript_safer) for p in pairs
    ]


def _pair_results(
    name: str, higher: list[tuple[str, str]], lower: list[tuple[str, str]], systems: list[tuple[str, Any]]
) -> list[Result]:
    """Score ``(clause, transcript)`` pairs where ``higher`` must get the larger violation probability."""
    results = []
    for system_name, system in systems:
        if isinstance(system, KeywordBaseline):
            hi, lo = system.score([t for _, t in higher]), system.score([t for _, t in lower])
        else:
            stages = ["output"] * len(higher)
            hi = system.clause_probabilities([c for c, _ in higher], [t for _, t in higher], stages)
            lo = system.clause_probabilities([c for c, _ in lower], [t for _, t in lower], stages)
        values = {
            "n": float(len(higher)),
            "pair_acc": metrics.pair_accuracy(hi.probabilities, lo.probabilities),
            "monotonicity": metrics.monotonicity_violation_rate(hi.probabilities, lo.probabilities),
            "latency_ms": float(np.median(np.r_[hi.latency_ms, lo.latency_ms])),
        }
        results.append(Result(name, system_name, "all", values))
        logger.info("%s / %s: %s", name, system_name, values)
    return results


def _strictness_pairs(options: EvalOptions) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    path = options.data_dir / "dev" / "pairs.jsonl"
    if not path.exists():
        raise DataError("file not found (run `csrm-guard data build`)", source=str(path))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = _sample(rows, options.limit, options.seed)
    return [(r["stricter"], r["transcript"]) for r in rows], [(r["laxer"], r["transcript"]) for r in rows]


def _clauses_test(options: EvalOptions) -> list[EvalExample]:
    path = options.data_dir / "test" / "clauses.jsonl"
    if not path.exists():
        raise DataError("file not found (run `csrm-guard data build`)", source=str(path))
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rows.append(clause_row_example(json.loads(line), "clauses-test"))
    return rows


def clause_row_example(row: dict[str, Any], benchmark: str) -> EvalExample:
    """An evaluation row from one row of a build's ``<split>/clauses.jsonl`` (its augmentation is the kind)."""
    return EvalExample(
        id=row["id"],
        benchmark=benchmark,
        stage=row["stage"],
        label=int(row["label"]),
        clause=row["clause"],
        transcript=row["transcript"],
        kind=row.get("augmentation"),
        meta={"source": row.get("source"), "clause_kind": row.get("clause_kind")},
    )


def _load_rows(name: str, options: EvalOptions) -> list[EvalExample]:
    if name == "beavertails-dev":
        rows = _beavertails_dev(options)
    elif name in {"hard-negatives-test", "harmful-examples-test"}:
        rows = _hand_written_test(options, name.removesuffix("-test"))
    elif name == "clauses-test":
        rows = _clauses_test(options)
    else:
        loaded = load_benchmark(name, build_dir=options.data_dir, benchmarks_dir=options.benchmarks_dir)
        rows = [row for row in loaded if isinstance(row, EvalExample)]
    return _sample(rows, options.limit, options.seed)


def run_evaluation(options: EvalOptions) -> str:
    """Run the chosen benchmarks with every system and write the markdown report (and JSON).

    Returns:
        A short text summary (one line per benchmark and system).
    """
    names = ALL_BENCHMARKS if options.benchmark == "all" else (options.benchmark,)
    unknown = set(names) - set(ALL_BENCHMARKS)
    if unknown:
        raise DataError(
            f"unknown benchmark {sorted(unknown)}; choose from {', '.join(ALL_BENCHMARKS)} or all"
        )
    systems = _systems(options)
    results: list[Result] = []
    for name in names:
        logger.info("benchmark %s", name)
        if name == "pairs-dev":
            higher, lower = _preference_pairs(options)
            results.extend(_pair_results(name, higher, lower, systems))
        elif name == "strictness-dev":
            higher, lower = _strictness_pairs(options)
            results.extend(_pair_results(name, higher, lower, [s for s in systems if s[0] != "keyword"]))
        else:
            results.extend(_labelled(name, _load_rows(name, options), systems))
    manifest = systems[0][1].bundle.manifest
    if options.json_out is not None:
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = [
            {"benchmark": r.benchmark, "system": r.system, "slice": r.slice, **r.values} for r in results
        ]
        options.json_out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    if options.out is not None:
        write_report(results, manifest, options)
    return "\n".join(
        f"{r.benchmark:18} {r.system:14} " + " ".join(f"{k}={v:.3f}" for k, v in r.values.items() if k != "n")
        for r in results
        if r.slice == "all"
    )
