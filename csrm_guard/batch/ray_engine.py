"""The Ray engine: Ray Data runs the shared chunk scorer on an actor pool; the driver writes the shards.

The dataset is a list of chunk descriptors (row range and byte offset, never the rows themselves). Each actor
of the pool builds one :class:`~csrm_guard.batch.core.ChunkScorer` (one guard, one ONNX session sized to the
CPUs or GPU it was given), reads its chunks from the input file and returns their score rows. The driver
collects the scores, and when every row of a shard has arrived it re-reads the shard's rows and writes its
part file, so memory stays bounded by the shards in flight.

Ray Data runs actor pools with ``max_restarts=-1`` and ``max_task_retries=-1``: a crashed actor is restarted and
its chunks are scored again. Scores are keyed by input row, so a retried chunk can never duplicate or drop a
row, and the run fails loudly rather than write a shard with a row missing.

Install with ``pip install 'csrm-guard[ray]'``; this module imports ``ray`` at the top and is loaded only
through ``csrm_guard._compat.require``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import ray
import ray.data
import ray.data.exceptions
import ray.exceptions

from csrm_guard.batch.core import BundleScorer, ChunkScorer, RayOptions, ScoringJob
from csrm_guard.batch.io import INPUT_ROW, Chunk, Plan, Record, read_chunk
from csrm_guard.batch.shards import ShardStats, Target, finish_shard
from csrm_guard.errors import ScorerError

__all__ = ["run_ray"]

logger = logging.getLogger(__name__)

_CHUNKS_PER_TASK = 16  # upper bound; small inputs get one chunk per task so every actor has work
_GPU_BATCH = 64  # sequences per ONNX run on a GPU actor (the CPU default, 8, would leave a GPU idle)


def run_ray(
    plan: Plan,
    target: Target,
    job: ScoringJob,
    *,
    done: Collection[int],
    schema: pa.Schema | None,
    on_rows: Callable[[int], None],
    options: RayOptions,
) -> dict[int, ShardStats]:
    """Score and write every shard of ``plan`` not in ``done`` on a Ray cluster.

    Args:
        plan: The input's shards and chunks (the input file must be readable from every node).
        target: Where the parts go (written by this process).
        job: What to score with; a :class:`BundleScorer` factory is resized to each actor's CPUs.
        done: Shards finished by an earlier run.
        schema: The Parquet input schema, or ``None``.
        on_rows: Called with the number of rows each arriving batch of scores adds.
        options: Cluster, actor count and per-actor resources.

    Returns:
        The counts of the shards written by this run.

    Raises:
        ScorerError: When the cluster fails to score every row (after Ray's retries).
    """
    pending = [shard for shard in range(len(plan.shards)) if shard not in done]
    if not pending:
        return {}
    with _connected(options.address), _quiet_progress():
        chunks = [chunk for shard in pending for chunk in plan.shards[shard]]
        gpus = _gpus_per_actor(options, job)
        actors = _actor_count(options, gpus, len(chunks))
        job = _sized(job, options.cpus_per_actor, gpu=gpus > 0)
        logger.info(
            "scoring %d chunks on %d Ray actors (%s CPU, %s GPU each)",
            len(chunks),
            actors,
            options.cpus_per_actor,
            gpus,
        )
        dataset = _dataset(plan, job, chunks, actors=actors, cpus=options.cpus_per_actor, gpus=gpus)
        try:
            return _collect(plan, target, dataset, pending=pending, schema=schema, on_rows=on_rows)
        except (ray.exceptions.RayError, ray.data.exceptions.ExecutionTimeoutError) as exc:
            raise ScorerError(f"the Ray job failed (finished shards are kept; --resume): {exc}") from exc


@contextmanager
def _connected(address: str | None) -> Iterator[None]:
    if ray.is_initialized():
        if address is not None:
            logger.warning("Ray is already initialised in this process; ignoring address=%r", address)
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # ray.init raises bare Exceptions (e.g. a node that timed out during startup)
        ray.shutdown()  # stop whatever half-started
        where = address or "a local cluster"
        raise ScorerError(f"could not start or join the Ray cluster ({where}): {exc}") from exc
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _quiet_progress() -> Iterator[None]:
    # The caller shows its own progress bar; Ray Data's bars would interleave with it. Ray Data also aborts a
    # dataset after 30 minutes without a finished block, which a starved or busy cluster reaches while every
    # actor is still working (measured: 2 actors sharing 2 cores with a training job); a stuck job is stopped
    # by the user instead, and `--resume` keeps what was finished.
    context = ray.data.DataContext.get_current()
    previous = context.enable_progress_bars, context.execution_no_progress_timeout_s
    context.enable_progress_bars = False
    context.execution_no_progress_timeout_s = -1
    try:
        yield
    finally:
        context.enable_progress_bars, context.execution_no_progress_timeout_s = previous


def _gpus_per_actor(options: RayOptions, job: ScoringJob) -> float:
    if options.gpus_per_actor is not None:
        return options.gpus_per_actor
    has_gpu = _resources().get("GPU", 0) > 0
    return 1.0 if has_gpu and isinstance(job.scorer_factory, BundleScorer) else 0.0


def _resources() -> dict[str, float]:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call,unused-ignore]  # untyped when ray is installed, Any when not
    return resources


def _actor_count(options: RayOptions, gpus: float, chunks: int) -> int:
    if options.num_actors is not None:
        return max(1, min(options.num_actors, chunks))
    resources = _resources()
    by_cpu = int(resources.get("CPU", 1) // max(options.cpus_per_actor, 1e-9))
    by_gpu = int(resources.get("GPU", 0) // gpus) if gpus > 0 else by_cpu
    return max(1, min(by_cpu, by_gpu, chunks))


def _sized(job: ScoringJob, cpus_per_actor: float, *, gpu: bool) -> ScoringJob:
    # One session per actor, sized to what the actor reserved: its CPUs as threads, and on a GPU larger runs.
    factory = job.scorer_factory
    if not isinstance(factory, BundleScorer):
        return job
    threads = factory.threads or max(1, int(cpus_per_actor))
    if gpu and factory.max_batch is None:
        factory = dataclasses.replace(factory, max_batch=_GPU_BATCH, max_tokens=_GPU_BATCH * 512)
    return dataclasses.replace(job, scorer_factory=dataclasses.replace(factory, threads=threads))


def _dataset(
    plan: Plan, job: ScoringJob, chunks: list[Chunk], *, actors: int, cpus: float, gpus: float
) -> ray.data.Dataset:
    per_task = max(1, min(_CHUNKS_PER_TASK, len(chunks) // (4 * actors)))
    items = [dataclasses.asdict(chunk) for chunk in chunks]
    return ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_task)).map_batches(
        ChunkScorer,
        fn_constructor_kwargs={"source": plan.source, "job": job},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        num_gpus=gpus,
        # Ray Data gives actor pools max_restarts=-1 and max_task_retries=-1 by default; the no-data-lost
        # guarantee rests on them (ray 2.60 deprecates passing them, and the crash test checks they hold).
    )


def _collect(
    plan: Plan,
    target: Target,
    dataset: ray.data.Dataset,
    *,
    pending: list[int],
    schema: pa.Schema | None,
    on_rows: Callable[[int], None],
) -> dict[int, ShardStats]:
    waiting: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    written: dict[int, ShardStats] = {}
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        fresh = 0
        touched = set()
        assert isinstance(batch, pa.Table)
        for row in batch.to_pylist():
            shard = plan.shard_of(row[INPUT_ROW])
            fresh += row[INPUT_ROW] not in waiting[shard]  # a retried chunk may arrive twice
            waiting[shard][row[INPUT_ROW]] = row
            touched.add(shard)
        on_rows(fresh)
        for shard in sorted(touched):
            if len(waiting[shard]) == plan.shard_rows(shard):
                written[shard] = finish_shard(
                    target, shard, _records(plan, shard), waiting.pop(shard), schema
                )
    missing = [shard for shard in pending if shard not in written]
    if missing:
        raise ScorerError(
            f"the Ray job ended with shards {missing[:10]} incomplete; resume the run to finish them"
        )
    return written


def _records(plan: Plan, shard: int) -> list[Record]:
    return [record for chunk in plan.shards[shard] for record in read_chunk(plan.source, chunk)]
