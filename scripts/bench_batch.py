#!/usr/bin/env python
"""Measure batch scoring throughput (rows per second) for the local and Ray engines, and check they agree.

Build the corpus first (scripts/make_batch_corpus.py). Each engine scores the same corpus under the same policy;
the outputs must be byte-identical. For Ray, the local cluster is started before the clock starts, so the
figure is the job's own throughput; the cluster start time is reported separately.

    python scripts/bench_batch.py runs/batch/corpus-20k.jsonl
    python scripts/bench_batch.py CORPUS --model BUNDLE --engines ray --num-actors 2 --cpus-per-actor 1
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import resource
import time
from pathlib import Path

from csrm_guard.batch import BatchResult, score_dataset

ROOT = Path(__file__).resolve().parent.parent


def run(args: argparse.Namespace, engine: str, out: Path) -> BatchResult:
    return score_dataset(
        args.corpus,
        args.policy,
        out=out,
        model=args.model,
        stage=args.stage,
        engine=engine,  # type: ignore[arg-type]
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        overwrite=True,
        threads=args.threads,
        num_actors=args.num_actors if engine == "ray" else None,
        cpus_per_actor=args.cpus_per_actor,
    )


def _cpu_seconds() -> float:
    # This process and every child it has reaped (Ray's raylet and workers, after ray.shutdown()). On a shared
    # machine, wall-clock rows/s depends on the other jobs; CPU time per row does much less.
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--policy", default=str(ROOT / "policies" / "general-assistant"))
    parser.add_argument("--model", help="bundle folder (default: the shipped bundle)")
    parser.add_argument("--stage", choices=("input", "output"), default="output")
    parser.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument(
        "--threads", type=int, help="ONNX threads for the local engine (default: onnxruntime's)"
    )
    parser.add_argument("--num-actors", type=int, help="Ray actors (default: one per CPU)")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "bench-batch")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    results: dict[str, dict[str, object]] = {}
    outputs: dict[str, Path] = {}
    for engine in engines:
        extra: dict[str, object] = {}
        if engine == "ray":
            import ray  # noqa: PLC0415  (optional)

            started = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False)
            extra["cluster_start_s"] = round(time.perf_counter() - started, 1)
            extra["cluster_cpus"] = ray.cluster_resources().get("CPU")
        outputs[engine] = args.out_dir / f"{engine}.jsonl"
        cpu_before = _cpu_seconds()
        result = run(args, engine, outputs[engine])
        if engine == "ray":
            ray.shutdown()  # reaps the workers, so their CPU time is counted below
        cpu = _cpu_seconds() - cpu_before
        actors = args.num_actors or (extra.get("cluster_cpus") or 1)
        per_actor = result.rows_per_second / float(actors) if engine == "ray" else None  # type: ignore[arg-type]
        results[engine] = {
            "rows": result.rows,
            "errors": result.errors,
            "seconds": round(result.seconds, 1),
            "rows_per_s": round(result.rows_per_second, 1),
            "per_actor_rows_per_s": round(per_actor, 1) if per_actor else None,
            "cpu_s": round(cpu, 1),
            "cpu_ms_per_row": round(1000 * cpu / max(result.scored, 1), 1),
            "outcomes": result.outcomes,
            **extra,
        }
        print(f"{engine}: {json.dumps(results[engine])}", flush=True)
    if len(outputs) > 1:
        first, *rest = outputs.values()
        identical = all(filecmp.cmp(first, other, shallow=False) for other in rest)
        print(f"outputs identical: {identical}")
        results["identical"] = {"value": identical}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs visible"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n| engine | rows | seconds | rows/s | rows/s per actor | CPU ms/row |  ({machine}; load {load})")
    print("|---|---|---|---|---|---|")
    for engine in engines:
        row = results[engine]
        print(
            f"| {engine} | {row['rows']} | {row['seconds']} | {row['rows_per_s']} | "
            f"{row['per_actor_rows_per_s'] or '-'} | {row['cpu_ms_per_row']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
