"""Turn (clause, transcript) pairs into padded model inputs with the ``tokenizers`` library only.

Layout (``docs/contracts.md``): the tokenizer's pair template, e.g. ``[CLS] clause [SEP] transcript [SEP]``.
The clause is capped at ``max_clause_tokens``; the transcript fills the rest of ``max_length`` and is
truncated from the *left*, so the judged turn (always last) and the end of the conversation survive.

Cost control:

* clause token ids are cached (a policy's clauses are tokenized once, not per check);
* a transcript is tokenized once per check, without special tokens, and sliced per clause;
* huge texts are pre-trimmed by characters before tokenizing, so a 10 MB message costs about as much as a long
  one;
* rows are grouped into length buckets and padded per bucket, never to a global maximum.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tokenizers import Encoding, Tokenizer

from csrm_guard.errors import BundleError

__all__ = ["Batch", "Encoder", "IntArray", "Row"]

logger = logging.getLogger(__name__)

IntArray = NDArray[np.int64]
"""Token id arrays."""

_CHARS_PER_TOKEN = 8  # first pre-trim guess; real text averages about 4 characters per token
_GROWTH = 8  # widen the window this much when a trimmed text yields too few tokens
_MAX_CHARS_PER_TOKEN = (
    512  # stop widening here: a 10 MB text of mostly whitespace is not worth tokenizing whole
)


@dataclass(frozen=True, slots=True)
class Row:
    """One model input row before padding.

    Attributes:
        ids: Token ids, special tokens included.
        type_ids: Segment ids (0 for the clause segment, 1 for the transcript segment).
    """

    ids: IntArray
    type_ids: IntArray


@dataclass(frozen=True, slots=True)
class Batch:
    """Padded rows ready for ``session.run``.

    Attributes:
        indices: Positions of the rows in the list handed to :meth:`Encoder.batches`.
        feeds: ``input_ids``, ``attention_mask`` and ``token_type_ids`` arrays, shape ``[len(indices), seq]``.
    """

    indices: tuple[int, ...]
    feeds: dict[str, IntArray]


@dataclass(frozen=True, slots=True)
class _Template:
    """The special tokens the tokenizer's pair post-processor puts around segment A and segment B."""

    head: IntArray
    mid: IntArray
    tail: IntArray
    head_types: IntArray
    mid_types: IntArray
    tail_types: IntArray
    a_type: int
    b_type: int

    @property
    def specials(self) -> int:
        return len(self.head) + len(self.mid) + len(self.tail)


class Encoder:
    """Tokenizes clauses and transcripts and assembles padded batches.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (its own padding and truncation settings are switched off).
        max_length: Total tokens per row, special tokens included.
        max_clause_tokens: Cap on the clause segment.
        clause_cache_size: How many distinct clause texts keep their token ids cached.
    """

    def __init__(
        self, tokenizer: Tokenizer, *, max_length: int, max_clause_tokens: int, clause_cache_size: int = 8192
    ) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_clause_tokens = max_clause_tokens
        self._template = _pair_template(tokenizer)
        if self._template.specials + 2 > max_length:
            raise BundleError(f"max_length {max_length} leaves no room for text after the special tokens")
        self.transcript_budget = max_length - self._template.specials - 1
        self.pad_id = _pad_id(tokenizer)
        self.clause_ids = functools.lru_cache(maxsize=clause_cache_size)(self._clause_ids)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, max_length: int, max_clause_tokens: int) -> Encoder:
        """Load ``tokenizer.json`` and build an encoder.

        Raises:
            BundleError: The file is not a valid ``tokenizers`` JSON file.
        """
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise BundleError(f"{path} is not a valid tokenizers file: {exc}", path=str(path)) from exc
        return cls(tokenizer, max_length=max_length, max_clause_tokens=max_clause_tokens)

    def _clause_ids(self, text: str) -> IntArray:
        trimmed = text[: self.max_clause_tokens * _MAX_CHARS_PER_TOKEN]  # clause keeps its start
        ids = self.tokenizer.encode(trimmed, add_special_tokens=False).ids[: self.max_clause_tokens]
        ids_array = np.asarray(ids, dtype=np.int64)
        ids_array.flags.writeable = False  # shared by every check through the cache
        return ids_array

    def transcript_ids(self, texts: Sequence[str]) -> list[IntArray]:
        """Tokenize transcripts, keeping at most the last ``transcript_budget`` tokens of each.

        Texts are pre-trimmed to their last characters before tokenizing; a text that yields too few tokens
        after trimming is re-tokenized with a wider window, so the result equals tokenizing the whole text
        unless it is mostly whitespace or markup that produces no tokens.

        Args:
            texts: Rendered transcripts.

        Returns:
            One read-only id array per text, without special tokens.
        """
        budget = self.transcript_budget
        window = budget * _CHARS_PER_TOKEN
        trimmed = [_tail(text, window) for text in texts]
        # encode_batch pays for a parallel map; one text (every sync check) is cheaper through encode.
        encodings = (
            [self.tokenizer.encode(trimmed[0], add_special_tokens=False)]
            if len(trimmed) == 1
            else self.tokenizer.encode_batch(trimmed, add_special_tokens=False)
        )
        return [self._widen(text, encoding, window) for text, encoding in zip(texts, encodings, strict=True)]

    def _widen(self, text: str, encoding: Encoding, window: int) -> IntArray:
        ids = encoding.ids
        # Keep one spare token: the cut may split a word, and that partial word must fall outside the budget.
        while len(ids) <= self.transcript_budget and len(text) > window:
            window *= _GROWTH
            if window > self.transcript_budget * _MAX_CHARS_PER_TOKEN:
                break
            ids = self.tokenizer.encode(_tail(text, window), add_special_tokens=False).ids
        result = np.asarray(ids[-self.transcript_budget :] if ids else [], dtype=np.int64)
        result.flags.writeable = False
        return result

    def row(self, clause: IntArray, transcript: IntArray) -> Row:
        """Assemble one row: the pair template around the clause and the left-truncated transcript.

        Args:
            clause: Clause ids from :meth:`clause_ids` (already capped).
            transcript: Transcript ids from :meth:`transcript_ids`.

        Returns:
            The row, at most ``max_length`` tokens long.
        """
        template = self._template
        room = self.max_length - template.specials - len(clause)
        kept = transcript[len(transcript) - room :] if room < len(transcript) else transcript
        ids = np.concatenate([template.head, clause, template.mid, kept, template.tail])
        types = np.concatenate(
            [
                template.head_types,
                np.full(len(clause), template.a_type, dtype=np.int64),
                template.mid_types,
                np.full(len(kept), template.b_type, dtype=np.int64),
                template.tail_types,
            ]
        )
        return Row(ids, types)

    def batches(self, rows: Sequence[Row], *, max_batch: int = 8, max_tokens: int = 4096) -> Iterator[Batch]:
        """Group rows into length buckets and pad each bucket to its own longest row.

        Rows are sorted by length; a bucket takes rows while it has fewer than ``max_batch`` rows, its padded
        size stays within ``max_tokens`` and padding would waste less than a quarter of it.

        Args:
            rows: Rows from :meth:`row`.
            max_batch: Most rows per batch.
            max_tokens: Most padded tokens per batch (bounds activation memory).

        Yields:
            Padded batches; together they cover every row once.
        """
        order = sorted(range(len(rows)), key=lambda index: -len(rows[index].ids))
        start = 0
        while start < len(order):
            longest = len(rows[order[start]].ids)
            stop = start + 1
            while (
                stop < len(order)
                and stop - start < max_batch
                and (stop - start + 1) * longest <= max_tokens
                and len(rows[order[stop]].ids) * 4 >= longest * 3
            ):
                stop += 1
            chosen = tuple(order[start:stop])
            yield Batch(chosen, self._pad([rows[index] for index in chosen], longest))
            start = stop

    def _pad(self, rows: Sequence[Row], length: int) -> dict[str, IntArray]:
        input_ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        types = np.zeros((len(rows), length), dtype=np.int64)
        for position, row in enumerate(rows):
            size = len(row.ids)
            input_ids[position, :size] = row.ids
            mask[position, :size] = 1
            types[position, :size] = row.type_ids
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}


def _tail(text: str, window: int) -> str:
    """The last ``window`` characters of ``text``, starting at a whitespace boundary when one is near."""
    if len(text) <= window:
        return text
    cut = len(text) - window
    # Start after the next whitespace so the first kept word is whole; give up after 100 characters (no
    # spaces).
    for offset in range(min(100, window)):
        if text[cut + offset].isspace():
            return text[cut + offset + 1 :]
    return text[cut:]


def _pair_template(tokenizer: Tokenizer) -> _Template:
    """Learn where the post-processor puts special tokens by post-processing two known segments."""
    first = tokenizer.encode("a", add_special_tokens=False)
    second = tokenizer.encode("b", add_special_tokens=False)
    pair = tokenizer.post_process(first, second, add_special_tokens=True)
    ids = np.asarray(pair.ids, dtype=np.int64)
    types = np.asarray(pair.type_ids, dtype=np.int64)
    # The two segments are the runs of non-special tokens: A first, then B (sequence_ids is unreliable here).
    ordinary = [i for i, special in enumerate(pair.special_tokens_mask) if not special]
    a_positions, b_positions = ordinary[: len(first.ids)], ordinary[len(first.ids) :]
    if not a_positions or len(b_positions) != len(second.ids) or a_positions[-1] >= b_positions[0]:
        raise BundleError(
            "the tokenizer's post-processor does not lay out a (clause, transcript) pair in order"
        )
    a_start, a_stop = a_positions[0], a_positions[-1] + 1
    b_start, b_stop = b_positions[0], b_positions[-1] + 1
    return _Template(
        head=ids[:a_start],
        mid=ids[a_stop:b_start],
        tail=ids[b_stop:],
        head_types=types[:a_start],
        mid_types=types[a_stop:b_start],
        tail_types=types[b_stop:],
        a_type=int(types[a_start]),
        b_type=int(types[b_start]),
    )


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0
