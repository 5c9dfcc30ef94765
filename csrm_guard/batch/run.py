"""``score_dataset``: re-score a table of conversations under a policy, locally or on a Ray cluster.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from csrm_guard._compat import require
from csrm_guard._types import Stage
from csrm_guard.batch.core import BundleScorer, RayOptions, ScorerFactory, ScoringJob
from csrm_guard.batch.io import Plan, arrow, input_schema, open_source, plan_chunks
from csrm_guard.batch.local import run_local
from csrm_guard.batch.shards import ShardStats, Target
from csrm_guard.model.bundle import load_bundle
from csrm_guard.policy.loader import load_policy
from csrm_guard.policy.render import render_policy
from csrm_guard.policy.schema import Policy

__all__ = ["BatchResult", "Engine", "score_dataset"]

logger = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
"""Where scoring runs: in this process, or on a Ray cluster."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch run did.

    Attributes:
        out: The output file or folder.
        engine: The engine used.
        rows: Rows in the input (and in the output: one per input row).
        scored: Rows scored by this run (the rest were in shards finished by an earlier run).
        errors: Rows whose ``error`` column is set, over the whole output.
        outcomes: Rows per outcome over the whole output, errors excluded.
        shards: Shards in the run.
        shards_skipped: Shards an earlier run had finished (``resume``).
        seconds: Wall time of this run, planning and writing included.

    .. versionadded:: 0.1
    """

    out: Path
    engine: Engine
    rows: int
    scored: int
    errors: int
    outcomes: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Throughput of this run: rows scored per wall-clock second."""
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def score_dataset(
    dataset: str | os.PathLike[str],
    policy: Policy | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    stage: Stage = "output",
    engine: Engine = "local",
    scorer_factory: ScorerFactory | None = None,
    batch_size: int = 32,
    shard_size: int = 10_000,
    resume: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    address: str | None = None,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score every row of a JSONL or Parquet file under a policy and write the rows with their scores.

    Each input row needs ``id``, ``messages`` (OpenAI-style) and, for the output stage, ``response`` (else the
    last assistant message is judged). The output has exactly one row per input row, in input order, with the
    input's fields plus ``input_row``, ``outcome``, ``violation_probability``, ``reward``, ``violations``,
    ``policy_hash``, ``model_id`` and ``error``. A malformed row is kept with ``error`` set; it never stops
    the run.

    Args:
        dataset: The input file (``.jsonl`` or ``.parquet``). On a cluster, every node must be able to read
            it.
        policy: A :class:`~csrm_guard.Policy` or a policy file or folder.
        out: A ``.jsonl`` or ``.parquet`` file, or a folder that receives one part file per shard.
        model: The model bundle folder; ``None`` uses the default bundle.
        stage: ``output`` judges the response; ``input`` judges the last user turn.
        engine: ``local`` (this process) or ``ray`` (a Ray Data actor pool; needs the ``ray`` extra).
        scorer_factory: A picklable callable building the scorer in each worker; replaces ``model`` (tests use
            it to score with a deterministic :class:`~csrm_guard.testing.FakeScorer`).
        batch_size: Rows per chunk: scored together, and the unit of work sent to a Ray actor.
        shard_size: Rows per output shard: the unit written and skipped by ``resume``.
        resume: Continue an interrupted run with the same settings, skipping its finished shards.
        overwrite: Replace an existing output or unfinished run.
        threads: ONNX threads for the local engine (``None``: onnxruntime's default).
        address: Ray cluster address; ``None`` joins this process's cluster or starts a local one.
        num_actors: Ray actors; ``None`` fills the cluster.
        cpus_per_actor: CPUs per Ray actor (its ONNX session gets as many threads).
        gpus_per_actor: GPUs per Ray actor; ``None`` uses one per actor when the cluster has GPUs.
        progress: Called as ``progress(rows_done, rows_total)`` at the start and as rows finish.

    Returns:
        Counts and timing of the run.

    Raises:
        DataError: The input cannot be read, or ``resume`` found a run with other settings.
        BundleError: The model bundle is missing, altered or incompatible.
        FileExistsError: The output exists and neither ``resume`` nor ``overwrite`` was given.
        MissingDependencyError: ``engine="ray"`` without the ``ray`` extra.
        ScorerError: The Ray job could not score every row.

    .. versionadded:: 0.1
    """
    started = time.perf_counter()
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if stage not in ("input", "output"):
        raise ValueError(f"stage must be 'input' or 'output', got {stage!r}")
    loaded = policy if isinstance(policy, Policy) else load_policy(Path(policy))
    factory = scorer_factory or BundleScorer(str(model) if model is not None else None, threads=threads)
    if engine == "ray" and isinstance(factory, BundleScorer):
        load_bundle(factory.bundle)  # a missing or altered bundle fails here, not once per actor
    job = ScoringJob(loaded, stage, factory)
    source = open_source(dataset)
    plan = plan_chunks(source, chunk_size=batch_size, shard_size=shard_size)
    target = Target.for_output(out, source.format)
    if target.format == "parquet":
        arrow()  # fail now, not after hours of scoring, when pyarrow is missing
    finished = target.prepare(_manifest(plan, job), resume=resume, overwrite=overwrite)
    if not loaded.stage(stage).enabled:
        logger.warning("the policy disables the %s stage: every row will be allowed unscored", stage)
    totals = _Progress(plan, finished, progress)
    schema = input_schema(source)
    options = RayOptions(address, num_actors, cpus_per_actor, gpus_per_actor)
    written = _run(
        engine,
        plan,
        target=target,
        job=job,
        finished=finished,
        schema=schema,
        on_rows=totals.add,
        options=options,
    )
    target.finalize(len(plan.shards), arrow().output_schema(schema) if target.format == "parquet" else None)
    overall = ShardStats()
    for stats in (*finished.values(), *written.values()):
        overall.add(stats)
    return BatchResult(
        out=target.path,
        engine=engine,
        rows=plan.rows,
        scored=sum(stats.rows for stats in written.values()),
        errors=overall.errors,
        outcomes=dict(overall.outcomes),
        shards=len(plan.shards),
        shards_skipped=len(finished),
        seconds=time.perf_counter() - started,
    )


def _run(
    engine: Engine,
    plan: Plan,
    *,
    target: Target,
    job: ScoringJob,
    finished: dict[int, ShardStats],
    schema: Any,
    on_rows: Callable[[int], None],
    options: RayOptions,
) -> dict[int, ShardStats]:
    if engine == "local":
        return run_local(plan, target, job, done=finished, schema=schema, on_rows=on_rows)
    ray_engine = require("csrm_guard.batch.ray_engine", extra="ray")
    written: dict[int, ShardStats] = ray_engine.run_ray(
        plan, target, job, done=finished, schema=schema, on_rows=on_rows, options=options
    )
    return written


def _manifest(plan: Plan, job: ScoringJob) -> dict[str, Any]:
    factory = job.scorer_factory
    describe = getattr(factory, "describe", None)
    model = describe() if callable(describe) else f"{type(factory).__module__}.{type(factory).__qualname__}"
    return {
        "input": plan.source.fingerprint(),
        "rows": plan.rows,
        "shard_size": plan.shard_size,
        "policy_hash": render_policy(job.policy).hash,
        "stage": job.stage,
        "model": model,
    }


class _Progress:
    def __init__(
        self, plan: Plan, finished: dict[int, ShardStats], report: Callable[[int, int], None] | None
    ) -> None:
        self.total = plan.rows
        self.done = sum(stats.rows for stats in finished.values())
        self.report = report
        if report is not None:
            report(self.done, self.total)

    def add(self, rows: int) -> None:
        self.done += rows
        if self.report is not None and rows:
            self.report(self.done, self.total)
