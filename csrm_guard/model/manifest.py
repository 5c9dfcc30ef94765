"""The model bundle manifest (``manifest.json``): written by export, read and verified by the runtime."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MANIFEST_FORMAT", "Calibration", "FileEntry", "Manifest", "Quantization"]

MANIFEST_FORMAT: Literal[1] = 1
"""The manifest format this package reads and writes."""

Quantization = Literal["int8-per-channel", "int8-per-channel-7bit", "fp32", "random-test"]
"""How the bundle's graph is stored: per-channel int8 weights (8-bit, or 7-bit, which scores the same on every
CPU's int8 kernel), fp32, or a random test model."""


class FileEntry(BaseModel):
    """A bundle file's checksum and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


def _default_thresholds() -> dict[Literal["input", "output"], float]:
    return {"input": 0.5, "output": 0.5}


class Calibration(BaseModel):
    """Calibration fitted on development data.

    Attributes:
        temperature: Divides the clause head's violation logit before the sigmoid.
        severity_temperature: Divides the severity head's cumulative logits before the sigmoid.
        severity_bias: Added to the severity head's cumulative logits after the temperature (Platt scaling), so
            the severity path's probabilities are calibrated on severity rows, not only sharpened or flattened.
        thresholds: Recommended violation threshold per stage, used when a policy sets none. Fitted on the
            policy-level decision (the maximum over a whole policy's clauses) in bundles from 1.1.0.
        clause_thresholds: Per stage, the threshold fitted on single ``(clause, transcript)`` rows, for scoring one
            clause at a time (clause-level evaluation); ``None`` in bundles before 1.1.0, where
            :attr:`thresholds` are clause-level.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=1.0, gt=0.0)
    severity_temperature: float = Field(default=1.0, gt=0.0)
    severity_bias: float = Field(default=0.0, ge=-20.0, le=20.0)
    thresholds: dict[Literal["input", "output"], float] = Field(default_factory=_default_thresholds)
    clause_thresholds: dict[Literal["input", "output"], float] | None = None


class Manifest(BaseModel):
    """Everything the runtime needs to know about a bundle.

    The ONNX graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, ``[batch, seq]``) and
    returns ``violation_logit`` (``[batch]``) for ``[CLS] clause [SEP] transcript [SEP]`` inputs and
    ``severity_logits`` (``[batch, len(categories), 3]``: cumulative logits for severity >= low, >= moderate,
    >= high, non-increasing along the last axis), read when the first segment is :attr:`taxonomy_query`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    format: Literal[1] = MANIFEST_FORMAT
    model_id: str
    model_version: str
    files: dict[str, FileEntry]
    max_length: int = Field(default=256, ge=16, le=4096)
    max_clause_tokens: int = Field(default=96, ge=8, le=1024)
    template_version: str
    template_hash: str
    taxonomy_version: str
    categories: tuple[str, ...]
    taxonomy_query: str = "Standard harm categories."
    calibration: Calibration = Field(default_factory=Calibration)
    quantization: Quantization = "fp32"
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    data_card: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
