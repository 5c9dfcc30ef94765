"""The runtime CSRM: model bundles, ONNX sessions, encoding, calibration and the scorer.

Runtime code only: numpy, onnxruntime and tokenizers (onnxruntime is imported when the first session is
built).
"""

from __future__ import annotations

from csrm_guard.model.bundle import Bundle, default_bundle_path, load_bundle
from csrm_guard.model.manifest import Manifest
from csrm_guard.model.scorer import OnnxScorer
from csrm_guard.model.types import AsyncScorer, ClauseScore, Scorer, ScoreRequest, Verdict

__all__ = [
    "AsyncScorer",
    "Bundle",
    "ClauseScore",
    "Manifest",
    "OnnxScorer",
    "ScoreRequest",
    "Scorer",
    "Verdict",
    "default_bundle_path",
    "load_bundle",
]
