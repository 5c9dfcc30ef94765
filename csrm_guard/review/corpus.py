"""Conversations to replay when comparing policy versions: the policies' own tests and a JSONL corpus.

A corpus is a JSON Lines file a team keeps next to its policies (real, anonymised traffic and known hard
cases), one conversation per line::

    {"id": "refund-01", "messages": [{"role": "user", "content": "..."}], "response": "..."}

``id`` and ``messages`` are required; ``response`` makes it an output-stage check (``stage`` may say so
explicitly). Other keys are ignored, so exported logs can be used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from csrm_guard._types import Stage
from csrm_guard.errors import DataError
from csrm_guard.policy import Policy

__all__ = ["Conversation", "from_tests", "load_corpus"]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation to check with both policy versions.

    Attributes:
        id: The test name, or ``corpus:<id>`` for a corpus row.
        messages: The conversation, ``{"role", "content"}`` mappings.
        response: The assistant response to judge, for output-stage checks.
        stage: The stage to check.
        source: ``test`` or ``corpus``.
        expect: For a test, what it expects (``allow``, ``violation`` or an outcome).
    """

    id: str
    messages: tuple[Mapping[str, str], ...]
    response: str | None
    stage: Stage
    source: Literal["test", "corpus"]
    expect: str | None = None


def from_tests(*policies: Policy | None, extra: Iterable[Any] = ()) -> tuple[Conversation, ...]:
    """Turn the tests of one or more policy versions into conversations (a later version's case wins by name).

    Args:
        policies: Policy versions whose inline ``tests`` to use (``None`` entries are skipped).
        extra: More :class:`~csrm_guard.policy.PolicyTest` objects (from tests files), added after.

    Returns:
        One conversation per distinct case name.
    """
    found: dict[str, Conversation] = {}
    tests = [test for policy in policies if policy is not None for test in policy.tests]
    for test in [*tests, *extra]:
        found[test.name] = Conversation(
            id=test.name,
            messages=tuple(message.model_dump() for message in test.messages),
            response=test.response,
            stage=test.judged_stage,
            source="test",
            expect=test.expect,
        )
    return tuple(found.values())


def load_corpus(path: str | Path) -> tuple[Conversation, ...]:
    """Read a JSONL corpus of conversations.

    Args:
        path: The ``.jsonl`` file.

    Returns:
        Its conversations, in file order.

    Raises:
        DataError: When the file cannot be read, or a line is not a valid conversation (names the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the corpus: {exc}", source=str(path)) from exc
    rows: list[Conversation] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _row(line, str(path), number)
        if row.id in seen:
            raise DataError(f"id {row.id[7:]!r} is used twice", source=str(path), row=number)
        seen.add(row.id)
        rows.append(row)
    return tuple(rows)


def _row(line: str, source: str, number: int) -> Conversation:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", source=source, row=number) from exc
    if not isinstance(data, dict):
        raise DataError("each line must be a JSON object", source=source, row=number)
    raw_id = data.get("id")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or str(raw_id) == "":
        raise DataError("'id' must be a non-empty string or number", source=source, row=number)
    response = data.get("response")
    if response is not None and not isinstance(response, str):
        raise DataError("'response' must be a string", source=source, row=number)
    stage: Stage = "output" if response is not None else "input"
    if "stage" in data:
        if data["stage"] not in ("input", "output") or (data["stage"] == "output" and response is None):
            problem = "'stage' must be 'input', or 'output' with a 'response'"
            raise DataError(problem, source=source, row=number)
        stage = data["stage"]
    return Conversation(
        id=f"corpus:{raw_id}",
        messages=_messages(data.get("messages"), source, number),
        response=response,
        stage=stage,
        source="corpus",
    )


def _messages(value: Any, source: str, number: int) -> tuple[Mapping[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise DataError("'messages' must be a non-empty list", source=source, row=number)
    messages: list[Mapping[str, str]] = []
    for index, message in enumerate(value):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)):
            raise DataError(f"messages[{index}] needs a string 'role'", source=source, row=number)
        if not isinstance(message.get("content"), str):
            raise DataError(f"messages[{index}] needs a string 'content'", source=source, row=number)
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)
