"""The local engine: scores every pending shard in this process with one guard and one ONNX session.

It runs the same :class:`~csrm_guard.batch.core.ChunkScorer` over the same chunks as the Ray engine, so both
give identical results; it is the engine for a laptop, CI, and inputs one machine scores in acceptable time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from csrm_guard.batch.core import ChunkScorer, ScoringJob
from csrm_guard.batch.io import Plan, Record
from csrm_guard.batch.shards import ShardStats, Target, finish_shard

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["run_local"]

logger = logging.getLogger(__name__)


def run_local(
    plan: Plan,
    target: Target,
    job: ScoringJob,
    *,
    done: Collection[int],
    schema: pa.Schema | None,
    on_rows: Callable[[int], None],
) -> dict[int, ShardStats]:
    """Score and write every shard of ``plan`` not in ``done``.

    Args:
        plan: The input's shards and chunks.
        target: Where the parts go.
        job: What to score with.
        done: Shards finished by an earlier run.
        schema: The Parquet input schema, or ``None``.
        on_rows: Called with the number of rows each scored chunk adds.

    Returns:
        The counts of the shards written by this run.
    """
    written: dict[int, ShardStats] = {}
    pending = [shard for shard in range(len(plan.shards)) if shard not in done]
    if not pending:
        return written
    scorer = ChunkScorer(plan.source, job)
    try:
        for shard in pending:
            records: list[Record] = []
            scores: dict[int, dict[str, Any]] = {}
            for chunk in plan.shards[shard]:
                chunk_records, chunk_scores = scorer.score_chunk(chunk)
                records.extend(chunk_records)
                scores.update((row["input_row"], row) for row in chunk_scores)
                on_rows(len(chunk_records))
            written[shard] = finish_shard(target, shard, records, scores, schema)
            logger.debug("shard %d written (%d rows)", shard, len(records))
    finally:
        scorer.close()
    return written
