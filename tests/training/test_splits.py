"""Conversation ids, deterministic splits, the Example schema and text trimming."""

from __future__ import annotations

from collections import Counter

import pytest

from csrm_guard.errors import DataError
from csrm_guard.training.data import Example, conversation_id, split_of, trim_text


class TestSplits:
    def test_conversation_id_normalises_case_and_space(self):
        """Trivial copies of one prompt share a conversation id; different prompts do not."""
        assert conversation_id("How do I  bake\nbread?") == conversation_id(" how do i bake bread? ")
        assert conversation_id("How do I bake bread?") != conversation_id("How do I bake cake?")

    def test_split_is_deterministic_and_near_80_10_10(self):
        """The hash partition is stable and close to the intended proportions."""
        ids = [conversation_id(f"prompt {n}") for n in range(20000)]
        counts = Counter(split_of(i) for i in ids)
        assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]
        assert 0.78 < counts["train"] / len(ids) < 0.82
        assert 0.09 < counts["dev"] / len(ids) < 0.11
        assert 0.09 < counts["test"] / len(ids) < 0.11

    def test_example_split_follows_its_conversation(self):
        """Two responses to one prompt land in the same split."""
        a, b = (Example(id=f"s:{n}", conversation_id=conversation_id("same prompt"), source="s",
                        messages=({"role": "user", "content": "same prompt"}, {"role": "assistant", "content": r}),
                        stage="output", harmful=False) for n, r in enumerate(("yes", "no")))  # fmt: skip
        assert a.split == b.split


class TestExampleSchema:
    def test_judged_turn_must_match_the_stage(self):
        """An output example whose last message is a user turn is rejected."""
        with pytest.raises(DataError, match="judged assistant turn"):
            Example(id="x:1", conversation_id="c", source="x", messages=({"role": "user", "content": "hi"},),
                    stage="output", harmful=False)  # fmt: skip

    def test_unknown_category_is_rejected(self):
        """Categories must exist in the taxonomy."""
        with pytest.raises(DataError, match="unknown taxonomy categories"):
            Example(id="x:1", conversation_id="c", source="x", messages=({"role": "user", "content": "hi"},),
                    stage="input", harmful=True, categories=("weapon",))  # fmt: skip

    def test_violated_category_cannot_be_severity_none(self):
        """A harmful turn's violated category needs a severity above none."""
        with pytest.raises(DataError, match="severity none"):
            Example(id="x:1", conversation_id="c", source="x", messages=({"role": "user", "content": "hi"},),
                    stage="input", harmful=True, categories=("hate",), severity={"hate": 0})  # fmt: skip

    def test_severity_vector_marks_unknown(self):
        """Categories without a weak label are -1 in the taxonomy target."""
        example = Example(id="x:1", conversation_id="c", source="x", messages=({"role": "user", "content": "hi"},),
                          stage="input", harmful=True, categories=("hate",), severity={"hate": 2})  # fmt: skip
        vector = example.severity_vector()
        assert vector["hate"] == 2
        assert vector["violence"] == -1
        assert len(vector) == 21


def test_trim_keeps_the_start_at_a_word_boundary():
    """Long turns are cut at a word boundary with a marker; short ones are unchanged."""
    assert trim_text("short text", 50) == "short text"
    trimmed = trim_text("word " * 100, 52)
    assert trimmed.startswith("word word")
    assert trimmed.endswith(" ...")
    assert len(trimmed) <= 56
