"""The measurements behind ``csrm-guard bench``: check latency against the ONNX floor, in one run.

Every figure is reported next to the *floor* measured in the same process a moment earlier: one ``session.run``
of the bundle's graph at batch 1 over an input as long as the check's model input. Ratios to the floor are what
compare across machines; absolute milliseconds on a shared machine do not.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csrm_guard.guard import Guard
from csrm_guard.model import OnnxScorer
from csrm_guard.model.encode import Encoder
from csrm_guard.model.session import OUTPUT_NAMES, dummy_inputs
from csrm_guard.policy import Policy, StageSettings

__all__ = ["BenchConfig", "bench_policy", "make_messages", "run_bench"]

_FILLER = (
    "the customer asked about their order and the assistant explained shipping times refunds warranty policy "
    "store hours account settings password reset billing cycle weather travel plans recipe ingredients history "
    "of the city museum opening times library card homework question about photosynthesis and the water cycle"
)
_WORDS = tuple(_FILLER.split())
_TOPICS = (
    "medical dosage advice",
    "legal advice about contracts",
    "cryptocurrency investment tips",
    "competitor products",
    "political campaign endorsements",
    "gambling odds",
    "tax avoidance schemes",
    "dating advice",
    "diet pills",
    "astrology predictions",
    "car repair instructions",
    "lottery numbers",
    "stock picks",
    "insurance claims",
    "sports betting",
    "religious conversion",
    "real estate pricing",
    "travel visas",
    "pet medication",
    "home security bypass",
    "loan approvals",
    "prescription refills",
    "exam answers",
    "celebrity gossip",
)
_VERBS = (
    "give",
    "discuss",
    "recommend",
    "promise",
    "speculate about",
    "offer opinions on",
    "share details of",
)
_LONG_TIMEOUT = (
    600_000  # the bench measures latency; a stage timeout must never turn a slow check into a failure
)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What one bench run measures.

    Attributes:
        bundle: Bundle folder (``None``: the shipped default bundle).
        policy: The policy for the "default policy" rows.
        providers: Execution providers for the scorer.
        threads: Intra-op threads (``None``: onnxruntime's default).
        iterations: Timed checks per cell (policies of 50+ clauses use half).
        lengths: Transcript lengths in tokens.
        sizes: Policy sizes (custom rules) for the latency-vs-size rows.
        callers: Concurrent async callers.
        top_k: The scorer's retrieval ``top_k``.
        startup: Measure import, first check and peak RSS in a fresh subprocess.
    """

    bundle: Path | None
    policy: Policy
    providers: str = "auto"
    threads: int | None = None
    iterations: int = 20
    lengths: tuple[int, ...] = (64, 256, 512)
    sizes: tuple[int, ...] = (1, 10, 50, 200)
    callers: tuple[int, ...] = (1, 8, 64)
    top_k: int | None = 20
    startup: bool = True


def _stats(samples_ms: list[float], cpu_ms: list[float] | None = None) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    stats = {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "n": len(samples_ms)}
    if cpu_ms:
        stats["cpu_p50_ms"] = float(np.median(cpu_ms))
    return stats


def _time(call: Callable[[], object], iterations: int, warmup: int = 2) -> dict[str, float]:
    """Wall-clock percentiles plus the median process CPU time (all threads) per call.

    CPU time is reported because the development machine is shared: under contention, wall time measures the
    neighbours, while CPU time still measures the work a check does.
    """
    for _ in range(warmup):
        call()
    samples, cpu = [], []
    for _ in range(iterations):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return _stats(samples, cpu)


def _ratios(cell: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    return {"ratio": cell["p50_ms"] / floor["p50_ms"], "cpu_ratio": cell["cpu_p50_ms"] / floor["cpu_p50_ms"]}


def make_messages(encoder: Encoder, tokens: int, stage: str) -> tuple[list[dict[str, str]], str | None]:
    """A conversation whose rendered transcript is about ``tokens`` tokens long (judged turn last)."""
    from csrm_guard.policy.render import render_transcript  # noqa: PLC0415 - only the bench needs it here

    def build(words: int) -> tuple[list[dict[str, str]], str | None]:
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(words))
        if stage == "input":
            return [{"role": "user", "content": text}], None
        return [{"role": "user", "content": "Can you help me with a question?"}], text

    def count(words: int) -> int:
        messages, response = build(words)
        transcript = render_transcript(messages, stage=stage, response=response)  # type: ignore[arg-type]
        return len(encoder.tokenizer.encode(transcript, add_special_tokens=False).ids)

    low, high = 1, tokens * 2
    while low < high:
        middle = (low + high) // 2
        if count(middle) < tokens:
            low = middle + 1
        else:
            high = middle
    return build(low)


def bench_policy(rules: int) -> Policy:
    """A policy with ``rules`` distinct custom rules (hard-limit categories come with every policy)."""
    texts = [
        f"The assistant must not {_VERBS[n % len(_VERBS)]} {_TOPICS[n % len(_TOPICS)]}"
        + (f" in context {n // len(_TOPICS)}." if n >= len(_TOPICS) else ".")
        for n in range(rules)
    ]
    return _patient(
        Policy(name=f"bench-{rules}", rules=[{"id": f"rule-{n}", "text": t} for n, t in enumerate(texts)])
    )


def _patient(policy: Policy) -> Policy:
    stages = {
        stage: StageSettings(**{**getattr(policy, stage).model_dump(), "timeout_ms": _LONG_TIMEOUT})
        for stage in ("input", "output")
    }
    return policy.model_copy(update=stages)


def _floor(scorer: OnnxScorer, length: int, iterations: int) -> dict[str, float]:
    feeds = dummy_inputs(1, length)
    return {
        "input_length": length,
        **_time(lambda: scorer.session.run(list(OUTPUT_NAMES), feeds), iterations, 3),
    }


def _input_length(
    scorer: OnnxScorer, messages: list[dict[str, str]], response: str | None, stage: str
) -> int:
    from csrm_guard.policy.render import render_transcript  # noqa: PLC0415

    transcript = render_transcript(messages, stage=stage, response=response)  # type: ignore[arg-type]
    ids = scorer.encoder.transcript_ids([transcript])[0]
    query = scorer.encoder.clause_ids(scorer.bundle.manifest.taxonomy_query)
    return len(scorer.encoder.row(query, ids).ids)


def _check(
    guard: Guard, stage: str, messages: list[dict[str, str]], response: str | None
) -> Callable[[], object]:
    if stage == "input":
        return lambda: guard.check_input(messages)
    return lambda: guard.check_output(messages, response or "")


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every measurement and return a JSON-ready report (see ``docs/performance.md``)."""
    started = time.perf_counter()
    scorer = OnnxScorer.load(
        config.bundle, providers=config.providers, threads=config.threads, top_k=config.top_k
    )
    report: dict[str, Any] = {"machine": _machine(scorer), "bundle": _bundle_info(scorer)}
    conversations = {
        (stage, tokens): make_messages(scorer.encoder, tokens, stage)
        for tokens in config.lengths
        for stage in ("input", "output")
    }
    floors: dict[int, dict[str, float]] = {}
    default = Guard(_patient(config.policy), scorer=scorer)
    rows = []
    for tokens in config.lengths:
        progress(f"floor and default policy at {tokens} tokens")
        for stage in ("input", "output"):
            messages, response = conversations[(stage, tokens)]
            length = _input_length(scorer, messages, response, stage)
            floors.setdefault(length, _floor(scorer, length, config.iterations * 2))
            cell = _time(_check(default, stage, messages, response), config.iterations)
            rows.append(
                {
                    "stage": stage,
                    "tokens": tokens,
                    "input_length": length,
                    **cell,
                    **_ratios(cell, floors[length]),
                    "passes": _passes(scorer, default, stage, messages, response),
                }
            )
    report["floor"] = [floors[length] for length in sorted(floors)]
    report["default_policy"] = {"name": config.policy.name, "checks": rows}
    report["policy_sizes"] = _sizes(scorer, config, conversations, floors, progress)
    report["concurrency"] = asyncio.run(
        _concurrency(scorer, default, config, conversations, floors, progress=progress)
    )
    default.close()
    scorer.close()
    if config.startup:
        progress("import, first check and peak RSS in a fresh process")
        report["startup"] = _startup(config, conversations)
    report["targets"] = _targets(report)
    report["elapsed_s"] = time.perf_counter() - started
    return report


def _passes(scorer: OnnxScorer, guard: Guard, stage: str, messages: Any, response: str | None) -> int:
    verdict = scorer.score(guard.core.prepare(stage, messages, response))  # type: ignore[arg-type]
    taxonomy = any(score.severity is not None for score in verdict.scores)
    return int(taxonomy) + sum(1 for score in verdict.scores if score.severity is None)


def _sizes(
    scorer: OnnxScorer, config: BenchConfig, conversations: Any, floors: Any, progress: Any
) -> list[Any]:
    tokens = 256 if 256 in config.lengths else config.lengths[0]
    rows = []
    for size in config.sizes:
        progress(f"policy of {size} rules")
        guard = Guard(bench_policy(size), scorer=scorer)
        iterations = config.iterations if size < 50 else max(3, config.iterations // 2)
        for stage in ("input", "output"):
            messages, response = conversations[(stage, tokens)]
            length = _input_length(scorer, messages, response, stage)
            cell = _time(_check(guard, stage, messages, response), iterations, warmup=1)
            rows.append(
                {
                    "rules": size,
                    "clauses": len(guard.core.rendered.for_stage(stage)),
                    "stage": stage,
                    "tokens": tokens,
                    "passes": _passes(scorer, guard, stage, messages, response),
                    **cell,
                    **_ratios(cell, floors[length]),
                }
            )
        guard.close()
    return rows


async def _concurrency(
    scorer: OnnxScorer, guard: Guard, config: BenchConfig, conversations: Any, floors: Any, *, progress: Any
) -> list[Any]:
    """Throughput of 1..N concurrent async callers, per stage, against the floor's single-stream passes/s."""
    tokens = 256 if 256 in config.lengths else config.lengths[0]
    rows = []
    for stage in ("input", "output"):
        messages, response = conversations[(stage, tokens)]
        floor_cell = floors[_input_length(scorer, messages, response, stage)]
        floor, floor_cpu = floor_cell["p50_ms"], floor_cell["cpu_p50_ms"]
        passes = _passes(scorer, guard, stage, messages, response)
        call = _acheck(guard, stage, messages, response)
        for callers in config.callers:
            progress(f"{callers} concurrent async callers, {stage} stage")
            per_caller = (
                max(2, (2 * max(config.callers)) // callers) if callers > 1 else max(8, config.iterations)
            )
            result = await _throughput(call, callers, per_caller)
            result.update(
                stage=stage,
                callers=callers,
                passes=passes,
                floor_rps=1000.0 / floor,
                ratio=result["throughput_rps"] * floor / 1000.0,
                cpu_ratio=floor_cpu / result["cpu_per_request_ms"],
            )
            rows.append(result)
    return rows


def _acheck(guard: Guard, stage: str, messages: Any, response: str | None) -> Callable[[], Awaitable[Any]]:
    if stage == "input":
        return lambda: guard.acheck_input(messages)
    return lambda: guard.acheck_output(messages, response or "")


async def _throughput(call: Callable[[], Awaitable[Any]], callers: int, per_caller: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for _ in range(per_caller):
            start = time.perf_counter()
            decision = await call()
            latencies.append((time.perf_counter() - start) * 1000.0)
            errors += decision.error is not None

    await asyncio.gather(*(worker() for _ in range(min(callers, 4))))  # warm the worker and the event loop
    latencies.clear()
    started, started_cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(callers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / elapsed,
        "cpu_per_request_ms": cpu * 1000.0 / len(latencies),
        **_stats(latencies),
    }


_STARTUP_SCRIPT = """
import json, resource, sys, time
start = time.perf_counter()
import csrm_guard
from csrm_guard.guard import Guard
from csrm_guard.policy import Policy
imported, imported_cpu = time.perf_counter(), time.process_time()
args = json.loads(sys.argv[1])
guard = Guard(Policy.model_validate(args["policy"]), model=args["bundle"])
decision = guard.check_input(args["messages"])
ready, ready_cpu = time.perf_counter(), time.process_time()
rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(5):
    guard.check_output(args["long_messages"], args["long_response"])
import asyncio
async def burst():
    await asyncio.gather(*(guard.acheck_output(args["long_messages"], args["long_response"]) for _ in range(64)))
asyncio.run(burst())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"import_s": imported - start, "ready_s": ready - start, "import_cpu_s": imported_cpu,
                  "ready_cpu_s": ready_cpu, "first_check_ok": decision.error is None,
                  "rss_ready_mb": rss_ready / 1024, "peak_rss_mb": peak / 1024}))
"""


def _startup(config: BenchConfig, conversations: Any) -> dict[str, Any]:
    short = conversations[("input", config.lengths[0])][0]
    long_messages, long_response = conversations[("output", config.lengths[-1])]
    from csrm_guard.model.bundle import default_bundle_path  # noqa: PLC0415

    args = {
        "policy": _patient(config.policy).model_dump(mode="json"),
        "bundle": str(config.bundle or default_bundle_path()),
        "messages": short,
        "long_messages": long_messages,
        "long_response": long_response,
    }
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        completed = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", _STARTUP_SCRIPT, json.dumps(args)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return {"error": "the start-up process did not finish within 900 s"}
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _machine(scorer: OnnxScorer) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "providers": scorer.providers,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _bundle_info(scorer: OnnxScorer) -> dict[str, Any]:
    manifest = scorer.bundle.manifest
    return {
        "model_id": scorer.model_id,
        "quantization": manifest.quantization,
        "max_length": manifest.max_length,
        "path": str(scorer.bundle.path),
        "top_k": scorer.top_k,
    }


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    checks = report["default_policy"]["checks"]
    output_256 = next((row for row in checks if row["stage"] == "output" and row["tokens"] == 256), None)
    if output_256:
        name = "default policy, 256 tokens, check_output p50 / floor"
        targets.append(_target(f"{name} (wall)", output_256["ratio"], 1.5))
        targets.append(_target(f"{name} (CPU)", output_256["cpu_ratio"], 1.5))
    sizes = [row for row in report["policy_sizes"] if row["rules"] == 200]
    if sizes:
        name = "200-clause policy p50 / floor, worst stage"
        targets.append(_target(f"{name} (wall)", max(r["ratio"] for r in sizes), 3.0))
        targets.append(_target(f"{name} (CPU)", max(r["cpu_ratio"] for r in sizes), 3.0))
    many = [row for row in report["concurrency"] if row["callers"] == 64]
    for row in many:
        name = f"64 async callers, check_{row['stage']} ({row['passes']} passes), throughput / floor single-stream"
        targets.append(_target(f"{name} (wall)", row["ratio"], 0.9, at_least=True))
        targets.append(_target(f"{name} (CPU)", row["cpu_ratio"], 0.9, at_least=True))
        targets.append(_target("64 async callers errors", row["errors"], 0))
    startup = report.get("startup", {})
    if "ready_s" in startup:
        targets.append(_target("import + first Guard ready, s (wall)", startup["ready_s"], 1.0))
        targets.append(_target("import + first Guard ready, s (CPU)", startup["ready_cpu_s"], 1.0))
        targets.append(_target("peak RSS (MB)", startup["peak_rss_mb"], 300.0))
    return targets


def _target(name: str, value: float, bound: float, *, at_least: bool = False) -> dict[str, Any]:
    met = value >= bound if at_least else value <= bound
    return {
        "name": name,
        "value": value,
        "target": f"{'>=' if at_least else '<='} {bound:g}",
        "met": bool(met),
    }
