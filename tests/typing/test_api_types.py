"""Type-level checks of the public API: mypy must accept this file (the test at the bottom runs it).

``@guard.protect`` must keep the parameters and return types of plain functions, coroutines, generators and async
generators. Each deliberately wrong call carries a ``type: ignore``; under mypy strict an unused ignore is an error,
so a wrapper that lost its signature fails this check.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, assert_type

from csrm_guard import Decision, Guard, Policy, Violation
from csrm_guard._types import Messages, Outcome
from csrm_guard.testing import StaticScorer

guard = Guard(Policy(name="typing"), scorer=StaticScorer(0.0))
MESSAGES: Messages = [{"role": "user", "content": "hi"}]


@guard.protect
def sync_fn(messages: Messages, temperature: float = 0.0) -> str:
    return "ok"


@guard.protect
async def async_fn(messages: Messages, *, n: int = 1) -> str:
    return "ok"


@guard.protect
def gen_fn(messages: Messages) -> Iterator[str]:
    yield "ok"


@guard.protect
async def agen_fn(messages: Messages) -> AsyncIterator[str]:
    yield "ok"


@guard.protect(stages=("output",), on_violation=print)
def configured(messages: Messages, limit: int) -> dict[str, int]:
    return {"limit": limit}


def _type_checks() -> None:
    assert_type(sync_fn(MESSAGES), str)
    assert_type(sync_fn(MESSAGES, temperature=0.5), str)
    coroutine = async_fn(MESSAGES, n=2)
    _ = assert_type(coroutine, Coroutine[Any, Any, str])
    coroutine.close()
    assert_type(gen_fn(MESSAGES), Iterator[str])
    assert_type(agen_fn(MESSAGES), AsyncIterator[str])
    assert_type(configured(MESSAGES, 3), dict[str, int])
    assert_type(sync_fn.guard, Guard)
    sync_fn(MESSAGES, temperature="hot")  # type: ignore[arg-type]
    _ = async_fn(MESSAGES, m=2)  # type: ignore[call-arg]
    configured(MESSAGES)  # type: ignore[call-arg]
    decision = guard.check_input(MESSAGES)
    assert_type(decision, Decision)
    assert_type(decision.outcome, Outcome)
    assert_type(decision.violations, tuple[Violation, ...])
    assert_type(decision.error, str | None)


async def _async_type_checks() -> None:
    assert_type(await async_fn(MESSAGES), str)
    assert_type(await guard.acheck_output(MESSAGES, "text"), Decision)
    async for chunk in guard.acheck_stream(MESSAGES, agen_fn(MESSAGES)):
        assert_type(chunk, str)
    for text in guard.check_stream(MESSAGES, gen_fn(MESSAGES)):
        assert_type(text, str)


def test_public_api_type_checks() -> None:
    """mypy (strict, project config) accepts this file: protect() keeps every signature it wraps."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml"), "--strict", __file__],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
