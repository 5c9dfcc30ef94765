"""Score benchmark rows with a model bundle through the runtime (``csrm_guard.model``), never torch.

Two entry points, matching the two kinds of benchmark rows:

* :meth:`BundleRunner.clause_probabilities`: clause-level rows, one ``(clause, transcript)`` pass each, through
  the runtime's encoder and ONNX session (calibrated with the manifest's temperature);
* :meth:`BundleRunner.policy_scores`: policy-level rows, through :class:`~csrm_guard.model.OnnxScorer` exactly as
  a ``Guard`` would call it (taxonomy mode for standard categories, clause mode for the rest).

An *unconditioned* bundle (the baseline trained without clauses) reads an empty first segment; for policy-level
rows it scores the transcript once and ignores the policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from csrm_guard._types import Stage
from csrm_guard.model import OnnxScorer, ScoreRequest, load_bundle
from csrm_guard.model.calibrate import clause_probabilities
from csrm_guard.model.session import OUTPUT_NAMES
from csrm_guard.policy import Policy
from csrm_guard.policy.render import render_policy

__all__ = ["BundleRunner", "Scored"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scored:
    """Probabilities of a batch of rows and what they cost.

    Attributes:
        probabilities: Calibrated violation probability per row (policy-level: the verdict's aggregate).
        thresholds: The threshold that applies to each row (the manifest's, per stage: clause-level for clause
            rows, the policy's or the manifest's policy-level one for policy rows).
        latency_ms: Wall time per row, in milliseconds.
    """

    probabilities: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    latency_ms: NDArray[np.float64]


class BundleRunner:
    """Runs one bundle over benchmark rows.

    Args:
        path: The bundle folder (``None``: the shipped default bundle).
        unconditioned: The bundle is the clause-blind baseline (empty first segment).
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, path: Path | None, *, unconditioned: bool = False, threads: int = 2) -> None:
        self.bundle = load_bundle(path)
        self.scorer = OnnxScorer.load(self.bundle, providers="cpu", threads=threads, top_k=None)
        self.unconditioned = unconditioned
        self.calibration = self.bundle.manifest.calibration

    @property
    def name(self) -> str:
        """The bundle's model id."""
        return self.bundle.model_id

    def threshold(self, stage: Stage) -> float:
        """The manifest's clause-level threshold for ``stage`` (its policy-level one in bundles without)."""
        thresholds = self.calibration.clause_thresholds or self.calibration.thresholds
        return float(thresholds.get(stage, 0.5))

    def clause_logits(self, clauses: Sequence[str], transcripts: Sequence[str]) -> NDArray[np.float32]:
        """Raw ``violation_logit`` for each ``(clause, transcript)`` pair."""
        encoder, session = self.scorer.encoder, self.scorer.session
        ids = encoder.transcript_ids(list(transcripts))
        firsts = ["" if self.unconditioned else clause for clause in clauses]
        rows = [encoder.row(encoder.clause_ids(c), t) for c, t in zip(firsts, ids, strict=True)]
        logits = np.zeros(len(rows), dtype=np.float32)
        for batch in encoder.batches(rows, max_batch=16, max_tokens=8192):
            violation, _ = session.run(list(OUTPUT_NAMES), batch.feeds)
            logits[np.asarray(batch.indices)] = np.asarray(violation).reshape(-1)
        return logits

    def clause_probabilities(
        self, clauses: Sequence[str], transcripts: Sequence[str], stages: Sequence[Stage]
    ) -> Scored:
        """Calibrated clause-mode probabilities, with per-stage thresholds and per-row cost."""
        start = time.perf_counter()
        logits = self.clause_logits(clauses, transcripts)
        per_row = (time.perf_counter() - start) * 1000.0 / max(1, len(logits))
        return Scored(
            probabilities=clause_probabilities(logits, self.calibration.temperature),
            thresholds=np.array([self.threshold(stage) for stage in stages]),
            latency_ms=np.full(len(logits), per_row),
        )

    def policy_scores(
        self, policies: Sequence[Policy], stages: Sequence[Stage], transcripts: Sequence[str]
    ) -> Scored:
        """Policy-level violation probabilities (max over clauses), one scorer call per row."""
        if self.unconditioned:
            return self.clause_probabilities([""] * len(transcripts), transcripts, stages)
        probabilities, thresholds, latency = [], [], []
        for policy, stage, transcript in zip(policies, stages, transcripts, strict=True):
            start = time.perf_counter()
            verdict = self.scorer.score(ScoreRequest(render_policy(policy), stage, transcript))
            latency.append((time.perf_counter() - start) * 1000.0)
            probabilities.append(verdict.violation_probability)
            thresholds.append(_policy_threshold(policy, stage, verdict.threshold))
        return Scored(np.array(probabilities), np.array(thresholds), np.array(latency))

    def close(self) -> None:
        """Release the onnxruntime session."""
        self.scorer.close()


def _policy_threshold(policy: Policy, stage: Stage, recommended: float) -> float:
    settings = getattr(policy, stage, None)
    threshold = getattr(settings, "threshold", None)
    return float(threshold) if threshold is not None else recommended
