"""Reliability under load: many concurrent calls through the decorator each get exactly one decision per check."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import threading
from typing import Any

import pytest

from csrm_guard.testing import FakeScorer, capture_decisions

pytestmark = pytest.mark.anyio

CALLS = 1000


async def jittery(clause: Any, transcript: str) -> float:
    """An async scorer that yields to the loop a random number of times, so calls interleave."""
    for _ in range(random.randint(0, 3)):
        await asyncio.sleep(0)
    return 0.9 if "FORBIDDEN" in transcript.rsplit("[judged]", 1)[-1] else 0.02


async def test_thousand_concurrent_decorated_calls(guard_factory, tmp_path) -> None:
    """1,000 concurrent decorated calls: one input and one output decision and audit line each, none lost."""
    path = tmp_path / "audit.jsonl"
    # Generous timeouts: this test is about bookkeeping; 2,000 checks share one loop (slow under coverage).
    guard = guard_factory(
        scorer=FakeScorer(jittery),
        audit=path,
        input={"timeout_ms": 120_000},
        output={"action": "refuse", "timeout_ms": 120_000},
    )

    @guard.protect
    async def llm(messages: Any) -> str:
        await asyncio.sleep(random.random() / 1000)
        number = int(messages[-1]["content"].split()[-1])
        return f"answer FORBIDDEN {number}" if number % 10 == 0 else f"answer {number}"

    with capture_decisions() as decisions:
        results = await asyncio.gather(*(llm([{"role": "user", "content": f"q {i}"}]) for i in range(CALLS)))
    guard.close()

    refused = [i for i, result in enumerate(results) if result != f"answer {i}"]
    assert refused == list(range(0, CALLS, 10))
    per_request = collections.Counter((d.request_id, d.stage) for d in decisions)
    assert len({d.request_id for d in decisions}) == CALLS
    assert set(per_request.values()) == {1}
    assert len(per_request) == 2 * CALLS
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert collections.Counter((r["request_id"], r["stage"]) for r in lines) == per_request
    assert sum(r["outcome"] == "refuse" for r in lines) == CALLS // 10


def test_concurrent_threads_share_one_guard(guard_factory) -> None:
    """Sync checks from 16 threads at once each get their own decision; none is lost or duplicated."""
    guard = guard_factory()
    seen: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            decision = guard.check_input([{"role": "user", "content": "hi"}], request_id=f"{n}-{i}")
            with lock:
                seen.append(decision.request_id)

    with capture_decisions() as decisions:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(seen) == sorted(d.request_id for d in decisions)
    assert len(set(seen)) == 16 * 25
