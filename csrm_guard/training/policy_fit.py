"""Thresholds fitted at the policy level: the runtime decides on the maximum over a whole policy's clauses.

A bundle's clause-level thresholds are fitted on single ``(clause, transcript)`` dev rows, but a ``Guard`` flags a
turn when *any* clause of its policy reaches the stage threshold. With a dozen clauses, the maximum of their
probabilities sits higher than any one of them, so a clause-level threshold over-refuses at the policy level. This
module scores dev conversations under whole policies through the runtime scorer, exactly as a ``Guard`` would,
and fits one threshold per stage on the policy-level maximum.

Fitting sets, both from the ``data build`` output's dev split (the benchmarks are never used):

* ``fit-general``: dev conversations of every source but BeaverTails under the default policy
  (``general-assistant``), plus the harmless hand-written hard negatives of the dev split; label: the example is
  harmful; and the hand-written harmful examples of the dev split, labelled by their known severity against the
  policy;
* ``fit-scenarios``: the hand-written scenario-rule dev rows under the default policy plus the row's own rule and the
  rules of up to three other dev families of the same stage, which the row does not break (a deployment's policy
  holds several custom rules, and the decision is the maximum over all of them); label: the row's.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from tqdm import tqdm

from csrm_guard._types import Stage
from csrm_guard.errors import DataError
from csrm_guard.evaluation.labels import exceeds_policy
from csrm_guard.evaluation.metrics import binary_scores
from csrm_guard.model import OnnxScorer, ScoreRequest
from csrm_guard.model.bundle import Bundle
from csrm_guard.policy import Policy, load_policy
from csrm_guard.policy.loader import load_policy_text
from csrm_guard.policy.render import render_policy, render_transcript
from csrm_guard.training.calibration import stage_thresholds
from csrm_guard.training.hard_negatives import SOURCE as HARD_NEGATIVES
from csrm_guard.training.harmful_examples import SOURCE as HARMFUL_EXAMPLES

__all__ = ["FitRow", "fit_policy_thresholds", "fitting_rows", "policy_maxima"]

logger = logging.getLogger(__name__)

SCENARIO_RULE_ID = "scenario-rule"
F1_TOLERANCE = 0.01
"""The policy-level F1 curve is flat near its peak (1.4.0's output stage: 0.760 at 0.18, 0.749 at 0.30, on ~800
rows), so its argmax moved by 0.1-0.2 between fits on nearly the same rows; the fit takes the highest threshold within
this much F1 of the best."""


@dataclass(frozen=True, slots=True)
class FitRow:
    """One conversation turn to score under a whole policy.

    Attributes:
        set: The fitting set (``fit-general`` or ``fit-scenarios``).
        id: The source row's id.
        policy: The policy it is scored under.
        stage: ``input`` or ``output``.
        transcript: The rendered transcript.
        label: 1 when the turn should be flagged.
    """

    set: str
    id: str
    policy: Policy
    stage: Stage
    transcript: str
    label: int


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise DataError("file not found (run `csrm-guard data build`)", source=str(path))
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", source=f"{path}:{number}") from exc


def _general_rows(data_dir: Path, policy: Policy, limit: int, seed: int) -> Iterator[FitRow]:
    dev = [e for e in _read_jsonl(data_dir / "examples.jsonl") if e.get("split") == "dev"]
    shared = [e for e in dev if e.get("source") not in {"beavertails", HARD_NEGATIVES, HARMFUL_EXAMPLES}]
    # Harmless hand-written hard negatives are allowed under any policy; the ones at 'low' severity are left out,
    # because whether they are allowed depends on the policy, not on the example's harmful flag.
    harmless = [e for e in dev if e.get("source") == HARD_NEGATIVES and not e["categories"]]
    known = [e for e in dev if e.get("source") == HARMFUL_EXAMPLES]
    for ex in [*random.Random(seed).sample(shared, min(limit, len(shared))), *harmless, *known]:  # noqa: S311
        messages, stage = ex["messages"], ex.get("stage", "output")
        if stage == "output":
            transcript = render_transcript(messages[:-1], stage="output", response=messages[-1]["content"])
        else:
            transcript = render_transcript(messages, stage="input")
        if ex.get("source") == HARMFUL_EXAMPLES:
            label = exceeds_policy(policy, ex["categories"], ex["severity"])
        else:
            label = bool(ex["harmful"])
        yield FitRow("fit-general", ex["id"], policy, stage, transcript, int(label))


def _scenario_rows(data_dir: Path, policy_path: Path, other_rules: int, seed: int) -> Iterator[FitRow]:
    document = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
    rows = [r for r in _read_jsonl(data_dir / "dev" / "clauses.jsonl") if r.get("source") == "scenarios"]
    # Rule texts of each dev family by stage: a row's policy also gets rules of other families, which it does not
    # break (the premise of the scn:other_rule rows), as a deployment's policy holds several custom rules.
    rules: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        if row["augmentation"] != "scn:other_rule":  # those rows' clause is another family's rule
            rules.setdefault((row["stage"], _family(row["id"])), set()).add(
                row["clause"].removeprefix("Rule: ")
            )
    for row in rows:
        stage, own = row["stage"], row["clause"].removeprefix("Rule: ")
        families = sorted(
            f
            for (s, f), texts in rules.items()
            if s == stage and f != _family(row["id"]) and own not in texts
        )
        rng = random.Random(f"{seed}:{row['id']}")  # noqa: S311 - sampling
        picked = rng.sample(families, min(other_rules, len(families)))
        extra = [
            {
                "id": f"{SCENARIO_RULE_ID}-other-{n}",
                "text": rng.choice(sorted(rules[stage, family])),
                "stages": [stage],
            }
            for n, family in enumerate(picked, start=1)
        ]
        rule = {"id": SCENARIO_RULE_ID, "text": own, "stages": [stage]}
        text = yaml.safe_dump({**document, "rules": [*document.get("rules", []), rule, *extra]})
        policy = load_policy_text(text, source=f"{policy_path} + {row['id']}", base_dir=policy_path.parent)
        yield FitRow("fit-scenarios", row["id"], policy, stage, row["transcript"], int(row["label"]))


def _family(row_id: str) -> str:
    return row_id.split(":")[1]


def fitting_rows(
    data_dir: Path, policy_path: Path, *, general_limit: int = 800, other_rules: int = 3, seed: int = 1
) -> list[FitRow]:
    """The two fitting sets of the module docstring.

    Args:
        data_dir: ``data build`` output (reads ``examples.jsonl`` and ``dev/clauses.jsonl``).
        policy_path: The default policy file the rows are scored under.
        general_limit: At most this many ``fit-general`` conversations of the shared data sets (a seeded sample).
        other_rules: Rules of other dev families (one each, same stage) added to each ``fit-scenarios`` row's policy.
        seed: Sampling seed.

    Raises:
        DataError: A file is missing or holds invalid JSON.
    """
    policy = load_policy(policy_path)
    return [
        *_general_rows(data_dir, policy, general_limit, seed),
        *_scenario_rows(data_dir, policy_path, other_rules, seed),
    ]


def policy_maxima(bundle: Bundle, rows: Sequence[FitRow], *, threads: int = 2) -> NDArray[np.float64]:
    """The policy-level score of each row: the maximum calibrated probability over its policy's clauses."""
    scorer = OnnxScorer.load(bundle, providers="cpu", threads=threads, top_k=None)
    maxima = np.zeros(len(rows), dtype=np.float64)
    try:
        for index, row in enumerate(tqdm(rows, desc="policy-level fit", unit="row")):
            verdict = scorer.score(ScoreRequest(render_policy(row.policy), row.stage, row.transcript))
            maxima[index] = max((score.probability for score in verdict.scores), default=0.0)
    finally:
        scorer.close()
    return maxima


def fit_policy_thresholds(
    maxima: NDArray[np.float64], rows: Sequence[FitRow], clause_thresholds: dict[str, float]
) -> tuple[dict[str, float], dict[str, Any]]:
    """One threshold per stage: the highest whose policy-level F1 is within ``F1_TOLERANCE`` of the best.

    Args:
        maxima: :func:`policy_maxima` of ``rows``.
        rows: The fitting rows.
        clause_thresholds: The clause-level thresholds, reported for comparison.

    Returns:
        The thresholds and a report: per fitting set, rows, F1 and over-refusal under the clause-level and the
        fitted thresholds.
    """
    labels = np.array([row.label for row in rows], dtype=np.float64)
    stages = [row.stage for row in rows]
    fitted = stage_thresholds(maxima, labels, stages, tolerance=F1_TOLERANCE)
    report: dict[str, Any] = {"rows": len(rows), **{f"threshold_{s}": t for s, t in fitted.items()}}
    for name in sorted({row.set for row in rows}):
        chosen = np.array([row.set == name for row in rows])
        entry: dict[str, float] = {"rows": int(chosen.sum())}
        for scheme, thresholds in (("clause", clause_thresholds), ("policy", fitted)):
            cut = np.array([thresholds[s] for s in stages])[chosen]
            predicted = maxima[chosen] >= cut
            entry[f"f1_{scheme}"] = binary_scores(labels[chosen], predicted.astype(np.float64), 0.5).f1
            negatives = labels[chosen] == 0
            entry[f"over_refusal_{scheme}"] = float(predicted[negatives].mean()) if negatives.any() else 0.0
        report[name] = entry
    logger.info("policy-level thresholds %s: %s", fitted, report)
    return fitted, report
