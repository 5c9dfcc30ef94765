"""Fixtures for batch scoring: deterministic picklable scorer factories and corpora with malformed rows.

The factories are classes of this module so that Ray workers can rebuild them: the Ray tests register this
module for pickling by value (test folders are not importable packages).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from csrm_guard import CategoryRule, Policy, Rule
from csrm_guard.policy.render import Clause
from csrm_guard.testing import FakeScorer

MALFORMED = {
    7: "{this is not json",
    19: json.dumps(["a", "list"]),
    23: json.dumps({"messages": [{"role": "user", "content": "no id"}], "response": "x"}),
    31: json.dumps({"id": "bad-messages", "messages": "hello", "response": "x"}),
    43: json.dumps({"id": "bad-role", "messages": [{"role": "robot", "content": "x"}], "response": "x"}),
}
"""Row index -> malformed line inserted by ``corpus_factory(..., malformed=True)``."""


def hashed_probability(clause: Clause, transcript: str) -> float:
    """A deterministic pseudo-probability of a clause for a transcript."""
    digest = hashlib.sha256(f"{clause.id}\n{transcript}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


@dataclass(frozen=True)
class HashScorerFactory:
    """Builds a FakeScorer scoring by hash; optionally kills its process once when it sees ``crash_on``."""

    crash_on: str | None = None
    crash_marker: str | None = None

    def __call__(self) -> FakeScorer:
        return FakeScorer(self._score, model_id="hash-scorer")

    def _score(self, clause: Clause, transcript: str) -> float:
        if self.crash_on and self.crash_marker and self.crash_on in transcript:
            marker = Path(self.crash_marker)
            if not marker.exists():
                marker.write_text(str(os.getpid()), encoding="utf-8")
                os._exit(1)  # a crash: the actor process dies mid-chunk
        return hashed_probability(clause, transcript)


@pytest.fixture(name="policy")
def _policy() -> Policy:
    """A small policy with two categories and a custom rule."""
    return Policy(
        name="batch-test",
        categories={"violence": CategoryRule(max_severity="low"), "hate": CategoryRule()},
        rules=(Rule(id="no-refunds", text="Never promise a refund."),),
    )


def _row(index: int) -> str:
    return json.dumps(
        {
            "id": f"row-{index:05d}",
            "messages": [{"role": "user", "content": f"question number {index}"}],
            "response": f"answer {index}: " + "lorem " * (index % 5),
            "meta": {"n": index},
        }
    )


@pytest.fixture(name="corpus_factory")
def _corpus_factory(tmp_path: Path) -> Callable[..., Path]:
    """``corpus_factory(rows, *, malformed=False, name=...)`` writes a JSONL corpus and returns its path."""

    def make(rows: int, *, malformed: bool = False, name: str = "corpus.jsonl") -> Path:
        lines = [MALFORMED[i] if malformed and i in MALFORMED else _row(i) for i in range(rows)]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return make


@pytest.fixture(name="hash_factory")
def _hash_factory() -> type[HashScorerFactory]:
    """The deterministic scorer factory class (instantiate with ``crash_on``/``crash_marker`` to crash once)."""
    return HashScorerFactory


@pytest.fixture(name="read_jsonl")
def _read_jsonl() -> Callable[[Path], list[dict[str, Any]]]:
    """``read_jsonl(path)`` reads an output file into a list of dicts."""

    def read(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    return read
