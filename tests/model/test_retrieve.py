"""Tests for csrm_guard.model.retrieve: the analyzer and the BM25 clause pre-filter."""

from __future__ import annotations

import pytest

from csrm_guard.model.retrieve import ClauseIndex, analyze, recall_at_k

CLAUSES = [
    "Rule: Do not give medical dosage advice for prescription drugs.",
    "Rule: Never recommend specific stocks or cryptocurrency investments.",
    "Rule: Do not discuss competitor products or their pricing.",
    "Guideline: Refuse requests for lottery or gambling predictions.",
    "Rule: Do not provide legal advice about contracts or lawsuits.",
]


class TestAnalyze:
    def test_drops_stopwords_and_template_markers(self):
        """Function words and the transcript markers are not terms."""
        assert analyze("[judged] User: What is the dosage?") == ["dosage"]

    def test_light_stemming(self):
        """Plural and -ing forms meet their stems."""
        assert analyze("weapons hacking") == analyze("weapon hack")


class TestIndex:
    @pytest.fixture(name="index")
    def _index(self):
        return ClauseIndex(CLAUSES)

    def test_relevant_clause_ranks_first(self, index):
        """The clause sharing rare terms with the query scores highest."""
        scores = index.scores("What dosage of this prescription drug should I take?")
        assert int(scores.argmax()) == 0

    def test_top_returns_k_in_policy_order(self, index):
        """top(k) returns exactly k indices, sorted, including the best match."""
        top = index.top("bitcoin and cryptocurrency investments", 2)
        assert len(top) == 2
        assert top == sorted(top)
        assert 1 in top

    def test_no_overlap_still_returns_k(self, index):
        """A query with no shared term still yields k clauses (policy order), never fewer."""
        assert index.top("zzz qqq", 3) == [0, 1, 2]

    def test_k_larger_than_the_policy(self, index):
        """k >= size keeps every clause."""
        assert index.top("anything", 10) == list(range(len(CLAUSES)))

    def test_recall(self, index):
        """recall_at_k is the share of relevant clauses kept."""
        assert recall_at_k(index, "lottery gambling predictions and competitor pricing", [2, 3], 2) == 1.0
        assert recall_at_k(index, "lottery gambling predictions", [2, 3], 1) == 0.5
        assert recall_at_k(index, "anything", [], 1) == 1.0

    def test_empty_policy(self):
        """An index over no clauses answers with nothing."""
        assert ClauseIndex([]).top("query", 3) == []
