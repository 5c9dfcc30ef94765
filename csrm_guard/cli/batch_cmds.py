"""Batch subcommand: ``score``, re-scoring a JSONL or Parquet corpus under a policy, locally or on Ray.

Thin shell over :func:`csrm_guard.batch.score_dataset`: parse, show a progress bar, print a summary with the
throughput. Exit codes: 0 every row was written (rows with an ``error`` column included), 2 usage error,
3 operational error (unreadable input, output in the way, cluster failure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from csrm_guard.batch import BatchResult, score_dataset

__all__ = ["register"]

_OK, _OPERATIONAL = 0, 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``score`` to the ``csrm-guard`` parser."""
    score = subparsers.add_parser(
        "score",
        help="score a JSONL or Parquet corpus under a policy (locally or on Ray)",
        description="Score every row ({id, messages, response}) of INPUT under a policy and write the rows "
        "with outcome, violation_probability, reward, violations, policy_hash, model_id and error added. "
        "Malformed rows are kept with their error. Exit 0 when the output is complete, 3 on operational errors.",
    )
    score.add_argument("input", metavar="INPUT", help="input file (.jsonl or .parquet)")
    score.add_argument("--policy", "-p", required=True, metavar="P", help="policy file or folder")
    score.add_argument(
        "--out", "-o", required=True, metavar="OUT", help="output .jsonl or .parquet file, or a shard folder"
    )
    score.add_argument("--engine", choices=("local", "ray"), default="local", help="where to score")
    score.add_argument("--stage", choices=("input", "output"), default="output", help="turn to judge")
    score.add_argument("--model", metavar="BUNDLE", help="model bundle folder (default: the shipped bundle)")
    again = score.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue an interrupted run, skipping done shards"
    )
    again.add_argument(
        "--overwrite", action="store_true", help="replace an existing output or unfinished run"
    )
    score.add_argument("--batch-size", type=_positive, default=32, metavar="N", help="rows per chunk (32)")
    score.add_argument(
        "--shard-size", type=_positive, default=10_000, metavar="N", help="rows per shard (10000)"
    )
    score.add_argument("--threads", type=_positive, metavar="N", help="ONNX threads for the local engine")
    ray_group = score.add_argument_group("ray engine")
    ray_group.add_argument(
        "--address", metavar="ADDR", help="Ray cluster address (default: start a local one)"
    )
    ray_group.add_argument(
        "--num-actors", type=_positive, metavar="N", help="actors (default: fill the cluster)"
    )
    ray_group.add_argument(
        "--cpus-per-actor", type=float, default=1.0, metavar="N", help="CPUs per actor (1)"
    )
    ray_group.add_argument(
        "--gpus-per-actor",
        type=float,
        metavar="N",
        help="GPUs per actor (default: 1 if the cluster has GPUs)",
    )
    score.add_argument("--json", action="store_true", help="print the summary as JSON on standard output")
    score.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    score.set_defaults(handler=_score)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _score(args: argparse.Namespace) -> int:
    if args.engine == "local" and (args.address or args.num_actors):
        print("error: --address and --num-actors need --engine ray", file=sys.stderr)
        return 2
    if args.engine == "ray" and not args.quiet:
        # Ray Data logs each execution's plan at INFO on standard error, through the progress bar.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    with _progress_bar(disabled=args.quiet) as progress:
        try:
            result = score_dataset(
                args.input,
                args.policy,
                out=args.out,
                model=args.model,
                stage=args.stage,
                engine=args.engine,
                batch_size=args.batch_size,
                shard_size=args.shard_size,
                resume=args.resume,
                overwrite=args.overwrite,
                threads=args.threads,
                address=args.address,
                num_actors=args.num_actors,
                cpus_per_actor=args.cpus_per_actor,
                gpus_per_actor=args.gpus_per_actor,
                progress=progress,
            )
        except OSError as exc:  # output in the way, disk full, permissions
            print(f"error: {exc}", file=sys.stderr)
            return _OPERATIONAL
    if args.json:
        print(json.dumps(_as_json(result), indent=2))
    else:
        _print_summary(result)
    return _OK


@contextlib.contextmanager
def _progress_bar(*, disabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if disabled:
        yield None
        return
    try:
        from tqdm import tqdm  # noqa: PLC0415  (optional: without it, a line every few seconds)
    except ImportError:
        yield _PlainProgress()
        return
    bar = tqdm(total=0, unit="row", unit_scale=True, desc="scoring", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


class _PlainProgress:
    """Progress lines on standard error, at most one every ``every`` seconds (when tqdm is not installed)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0
        self.first: int | None = None  # rows already done when the run started (resume)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done
        if now - self.last >= self.every or done == total:
            self.last = now
            rate = (done - self.first) / max(now - self.started, 1e-9)
            print(f"scoring: {done:,}/{total:,} rows ({rate:,.1f} rows/s)", file=sys.stderr, flush=True)


def _print_summary(result: BatchResult) -> None:
    print(
        f"scored {result.scored:,} rows in {result.seconds:.1f} s ({result.rows_per_second:,.1f} rows/s, "
        f"{result.engine} engine)"
    )
    if result.shards_skipped:
        print(f"  resumed: {result.shards_skipped} of {result.shards} shards were already done")
    outcomes = " · ".join(f"{name} {count:,}" for name, count in sorted(result.outcomes.items()))
    print(f"  outcomes over {result.rows:,} rows: {outcomes or 'none'}")
    if result.errors:
        print(f"  errors: {result.errors:,} rows could not be scored (see their 'error' column)")
    print(f"  wrote {result.out}")


def _as_json(result: BatchResult) -> dict[str, Any]:
    return {
        "out": str(result.out),
        "engine": result.engine,
        "rows": result.rows,
        "scored": result.scored,
        "errors": result.errors,
        "outcomes": result.outcomes,
        "shards": result.shards,
        "shards_skipped": result.shards_skipped,
        "seconds": round(result.seconds, 3),
        "rows_per_second": round(result.rows_per_second, 2),
    }
