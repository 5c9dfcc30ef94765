"""Measure the delay the streaming guard adds to the first released token, and its overhead per stream.

The upstream is an async generator producing ~4-character tokens at a fixed rate; the scorer is a FakeScorer
that sleeps for a fixed time in a worker thread (default 12 ms, the fused-int8 encoder pass at 256 tokens measured
in /work/shared/notes/measurements.md), so the figures isolate the guard's own behaviour from the model.

Usage: python scripts/bench_stream_delay.py [--runs 5] [--scorer-ms 12] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from csrm_guard import Guard, Policy, StageSettings
from csrm_guard.testing import FakeScorer

TOKEN = "tok "  # 4 characters, about one BPE token of English text
TOKENS = 120


def scorer(latency_ms: float) -> FakeScorer:
    def fn(clause: Any, transcript: str) -> float:
        time.sleep(latency_ms / 1000)
        return 0.01

    return FakeScorer(fn)


async def upstream(interval_s: float, stamps: list[float]) -> AsyncIterator[str]:
    for _ in range(TOKENS):
        if interval_s:
            await asyncio.sleep(interval_s)
        stamps.append(time.perf_counter())
        yield TOKEN


async def one_run(guard: Guard | None, interval_s: float) -> tuple[float, float]:
    """Return (first-token delay ms, end-of-stream delay ms) against the upstream's own timing."""
    produced: list[float] = []
    source = upstream(interval_s, produced)
    stream = source if guard is None else guard.acheck_stream([{"role": "user", "content": "hi"}], source)
    first = None
    async for _ in stream:
        first = first or time.perf_counter()
    last = time.perf_counter()
    assert first is not None
    return (first - produced[0]) * 1000, (last - produced[-1]) * 1000


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for rate in (0.0, 0.02):  # as fast as possible; 50 tokens/s (a typical hosted LLM)
        for window in (None, 16, 64, 200):
            guard, fake = None, scorer(args.scorer_ms)
            if window is not None:
                policy = Policy(name="bench", output=StageSettings(hold_back_chars=window))
                guard = Guard(policy, scorer=fake)
            runs = [await one_run(guard, rate) for _ in range(args.runs)]
            if guard is not None:
                await guard.aclose()
            rows.append({
                "tokens_per_s": "max" if rate == 0 else round(1 / rate),
                "hold_back_chars": window if window is not None else "unguarded",
                "first_token_delay_ms": round(statistics.median(r[0] for r in runs), 2),
                "end_delay_ms": round(statistics.median(r[1] for r in runs), 2),
                "checks_per_stream": len(fake.calls) / args.runs,
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scorer-ms", type=float, default=12.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"scorer latency {args.scorer_ms} ms, {TOKENS} tokens of {len(TOKEN)} chars, median of {args.runs} runs"
    )
    print(
        "| tokens/s | hold_back_chars | first-token delay (ms) | end-of-stream delay (ms) | checks/stream |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(str(v) for v in row.values())} |")


if __name__ == "__main__":
    main()
