"""Batch scoring: re-score large tables of conversations under a policy, in this process or on a Ray cluster.

:func:`score_dataset` reads a JSONL or Parquet file of ``{"id", "messages", "response"}`` rows and writes the
same rows with ``outcome``, ``violation_probability``, ``reward``, ``violations``, ``policy_hash``,
``model_id`` and ``error`` added. The ``local`` engine needs nothing beyond the runtime; the ``ray`` engine
(``pip install 'csrm-guard[ray]'``) runs the same per-batch function on a Ray Data actor pool, so both give
identical results. :func:`corpus_impact` scores a corpus under two policy versions and joins the outputs into
the decisions that flip (``csrm-guard diff --engine``).

.. versionadded:: 0.1
"""

from __future__ import annotations

from csrm_guard.batch.core import BundleScorer, RayOptions, ScorerFactory, ScoringJob, score_records
from csrm_guard.batch.impact import CorpusImpact, corpus_impact
from csrm_guard.batch.io import INPUT_ROW, SCORE_COLUMNS
from csrm_guard.batch.run import BatchResult, Engine, score_dataset

__all__ = [
    "INPUT_ROW",
    "SCORE_COLUMNS",
    "BatchResult",
    "BundleScorer",
    "CorpusImpact",
    "Engine",
    "RayOptions",
    "ScorerFactory",
    "ScoringJob",
    "corpus_impact",
    "score_dataset",
    "score_records",
]
