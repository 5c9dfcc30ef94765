"""Lexical pre-filter for long policies: BM25 over clause texts, top-k clauses per transcript.

A cross-encoder pays one pass per (clause, transcript) pair, so a policy with 200 free-text rules cannot send
every rule through the model. :class:`ClauseIndex` is built once per policy version (it is cached with the
policy's plan in the scorer) and, per check, ranks the clauses by BM25 against the transcript and keeps the
best ``top_k``. Only the query side runs per call: one regular-expression pass over the (pre-trimmed)
transcript and a gather-sum over a small dense matrix.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["STOPWORDS", "ClauseIndex", "analyze", "recall_at_k"]

_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "ly", "s")

_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers him his how i if in into is it its itself just me more most my no nor not
now of off on once only or other our out over own same she should so some such than that the their
them then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours user assistant judged rule guideline allowed
"""

STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words ignored by the analyzer: English function words plus the transcript and clause template markers."""


def _stem(word: str) -> str:
    # A crude suffix stripper: enough for "weapons"/"weapon", "hacking"/"hack"; keeps short words intact.
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def analyze(text: str) -> list[str]:
    """Lower-case words, stop words dropped, light suffix stemming.

    Args:
        text: Any text.

    Returns:
        The terms, in order, with repeats.
    """
    return [
        _stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS and not word.isdigit()
    ]


class ClauseIndex:
    """A BM25 index over one policy's clauses.

    Args:
        texts: The clause texts, in policy order.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
    """

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        documents = [Counter(analyze(text)) for text in texts]
        vocabulary = sorted({term for document in documents for term in document})
        self._columns = {term: column for column, term in enumerate(vocabulary)}
        self.size = len(texts)
        lengths = np.asarray([sum(document.values()) for document in documents], dtype=np.float64)
        average = float(lengths.mean()) if self.size and lengths.mean() > 0 else 1.0
        frequencies = np.zeros((self.size, len(vocabulary)), dtype=np.float64)
        for row, document in enumerate(documents):
            for term, count in document.items():
                frequencies[row, self._columns[term]] = count
        df = (frequencies > 0).sum(axis=0)
        idf = np.log1p((self.size - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths / average)
        weights = idf * frequencies * (k1 + 1.0) / (frequencies + norm[:, None])
        self._weights: NDArray[np.float32] = weights.astype(np.float32)

    def scores(self, query: str) -> NDArray[np.float32]:
        """BM25 score of every clause against ``query`` (each distinct query term counted once).

        Args:
            query: The transcript, or its tail.

        Returns:
            One score per clause, in policy order.
        """
        columns = sorted({self._columns[term] for term in analyze(query) if term in self._columns})
        if not columns:
            return np.zeros(self.size, dtype=np.float32)
        result: NDArray[np.float32] = self._weights[:, columns].sum(axis=1)
        return result

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the ``k`` best clauses for ``query``, in policy order.

        Ties keep policy order; when fewer than ``k`` clauses share a term with the query, the rest are filled
        in policy order so that exactly ``min(k, size)`` clauses are returned.

        Args:
            query: The transcript, or its tail.
            k: How many clauses to keep.

        Returns:
            Sorted clause indices.
        """
        if k >= self.size:
            return list(range(self.size))
        ranked = np.argsort(-self.scores(query), kind="stable")[:k]
        return sorted(int(index) for index in ranked)


def recall_at_k(index: ClauseIndex, query: str, relevant: Sequence[int], k: int) -> float:
    """Share of ``relevant`` clause indices that :meth:`ClauseIndex.top` keeps (1.0 if none is relevant)."""
    if not relevant:
        return 1.0
    kept = set(index.top(query, k))
    return sum(1 for item in relevant if item in kept) / len(relevant)
