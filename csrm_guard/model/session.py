"""The one place an ``onnxruntime.InferenceSession`` is built (STYLE.md item 7).

Provider choice is explicit: ``"auto"`` (CUDA when ``onnxruntime-gpu`` is installed and a GPU is usable, else
CPU), ``"cpu"``, ``"cuda"`` (CUDA, falling back to CPU with a warning when CUDA is not active) or an explicit
list of onnxruntime provider names, each of which must be available. Sessions get explicit thread counts, full
graph optimisation, and a warm-up run so that the first check does not pay for lazy initialisation.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from csrm_guard.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "CPU",
    "CUDA",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "ProviderSpec",
    "available_providers",
    "build_session",
    "dummy_inputs",
    "resolve_providers",
    "session_options",
    "warm_up",
]

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("violation_logit", "severity_logits")

ProviderSpec = str | Sequence[str]
"""``"auto"``, ``"cpu"``, ``"cuda"``, or a sequence of onnxruntime provider names in priority order."""

_ALIASES = {"cpu": [CPU], "cuda": [CUDA, CPU], "gpu": [CUDA, CPU]}


def _onnxruntime() -> Any:
    # Imported on first use: `import csrm_guard` (and CLI commands that never score) should not pay ~0.3 s for
    # it.
    import onnxruntime  # noqa: PLC0415

    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers compiled into the installed onnxruntime build."""
    return list(_onnxruntime().get_available_providers())


def resolve_providers(providers: ProviderSpec = "auto") -> list[str]:
    """Turn a provider choice into the ordered list handed to onnxruntime.

    Args:
        providers: ``"auto"``, ``"cpu"``, ``"cuda"`` or explicit provider names.

    Returns:
        Provider names in priority order; CPU is always last as the fallback for ``auto`` and ``cuda``.

    Raises:
        ModelError: An unknown alias, or an explicit provider that this onnxruntime build does not have (the
            message lists the available ones).
    """
    available = available_providers()
    if isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            return [CUDA, CPU] if CUDA in available else [CPU]
        if key in _ALIASES:
            return list(_ALIASES[key])
        providers = [providers]
    chosen = list(providers)
    if not chosen:
        raise ModelError(f"no execution provider given; available: {', '.join(available)}")
    missing = [name for name in chosen if name not in available]
    if missing:
        raise ModelError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime build; "
            f"available: {', '.join(available)} (aliases: auto, cpu, cuda). For CUDA install "
            "'csrm-guard[gpu]' (onnxruntime-gpu) in place of onnxruntime"
        )
    return chosen


def session_options(threads: int | None = None, *, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Session options used for every csrm_guard session.

    Args:
        threads: Intra-op threads (default: onnxruntime's choice, one per physical core).
        inter_op_threads: Inter-op threads (the graph is a chain, so 1 is enough).

    Returns:
        Options with full graph optimisation and sequential execution.
    """
    runtime = _onnxruntime()
    options = runtime.SessionOptions()
    options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = runtime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads) if threads else 0
    options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3  # onnxruntime's own warnings go through our logger/warnings instead
    return options


def build_session(
    model_path: str | os.PathLike[str],
    *,
    providers: ProviderSpec = "auto",
    threads: int | None = None,
) -> ort.InferenceSession:
    """Create an inference session for a bundle's graph.

    Args:
        model_path: The ``model.onnx`` file.
        providers: Provider choice, see :func:`resolve_providers`.
        threads: Intra-op threads (``None``: onnxruntime default).

    Returns:
        The session, with inputs and outputs checked against the bundle contract.

    Raises:
        ModelError: The providers are unavailable, or onnxruntime cannot load the graph, or the graph's inputs
            and outputs do not follow the contract.
    """
    requested = providers
    chosen = resolve_providers(providers)
    if threads is not None and threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")
    # Hand onnxruntime only providers it has: it would warn and drop the others itself; we warn once, below.
    usable = [name for name in chosen if name in available_providers()] or [CPU]
    try:
        session = _onnxruntime().InferenceSession(
            str(model_path), sess_options=session_options(threads), providers=usable
        )
    except (
        Exception
    ) as exc:  # onnxruntime raises its own untyped exceptions (Fail, InvalidGraph, RuntimeException)
        raise ModelError(f"onnxruntime could not load {model_path}: {exc}") from exc
    _report_providers(session, requested, chosen)
    _check_signature(session, Path(model_path))
    return session


def _report_providers(session: ort.InferenceSession, requested: ProviderSpec, chosen: list[str]) -> None:
    active = list(session.get_providers())
    wanted_cuda = CUDA in chosen and requested != "auto"
    if wanted_cuda and CUDA not in active:
        message = (
            f"CUDA was requested but is not active (active providers: {', '.join(active)}); running on CPU. "
            "Check that onnxruntime-gpu is installed and that a GPU and matching CUDA/cuDNN libraries are "
            "visible"
        )
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    elif CUDA in chosen and CUDA not in active:
        logger.info("no usable GPU for onnxruntime-gpu; running on CPU")
    logger.info("onnxruntime session on %s", ", ".join(active))


def _check_signature(session: ort.InferenceSession, model_path: Path) -> None:
    inputs = {node.name for node in session.get_inputs()}
    outputs = {node.name for node in session.get_outputs()}
    if missing_in := [name for name in INPUT_NAMES if name not in inputs]:
        raise ModelError(f"{model_path} lacks input(s) {missing_in}; it has {sorted(inputs)}")
    if missing_out := [name for name in OUTPUT_NAMES if name not in outputs]:
        raise ModelError(f"{model_path} lacks output(s) {missing_out}; it has {sorted(outputs)}")


def dummy_inputs(batch: int, length: int) -> dict[str, Any]:
    """Inputs of the given shape (token id 0s with a full mask), for warm-up and floor measurements."""
    shape = (batch, length)
    return {
        "input_ids": np.zeros(shape, dtype=np.int64),
        "attention_mask": np.ones(shape, dtype=np.int64),
        "token_type_ids": np.zeros(shape, dtype=np.int64),
    }


def warm_up(session: ort.InferenceSession, lengths: Sequence[int] = (16, 128)) -> None:
    """Run the graph once per length so allocations and kernel choices happen at load, not on first check.

    Args:
        session: The session to warm.
        lengths: Sequence lengths to run at batch 1.
    """
    for length in lengths:
        session.run(list(OUTPUT_NAMES), dummy_inputs(1, length))
