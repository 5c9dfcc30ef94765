"""Tests for csrm_guard.model.encode: pair layout, truncation, pre-trimming, caching and length buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from csrm_guard.model.encode import Encoder

MAX_LENGTH = 64
MAX_CLAUSE = 16


@pytest.fixture(name="tokenizer_path")
def _tokenizer_path(random_bundle: Path) -> Path:
    return random_bundle / "tokenizer.json"


@pytest.fixture(name="encoder")
def _encoder(tokenizer_path: Path) -> Encoder:
    return Encoder.from_file(tokenizer_path, max_length=MAX_LENGTH, max_clause_tokens=MAX_CLAUSE)


def _reference(tokenizer_path: Path, clause: str, transcript: str) -> list[int]:
    """What tokenizers itself produces with the contract's truncation (clause capped, transcript from the left)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    clause_ids = tokenizer.encode(clause, add_special_tokens=False)
    clause_ids.truncate(MAX_CLAUSE)
    transcript_ids = tokenizer.encode(transcript, add_special_tokens=False)
    transcript_ids.truncate(MAX_LENGTH - 3 - len(clause_ids.ids), direction="left")
    return tokenizer.post_process(clause_ids, transcript_ids, add_special_tokens=True).ids


def _row(encoder: Encoder, clause: str, transcript: str) -> list[int]:
    return encoder.row(encoder.clause_ids(clause), encoder.transcript_ids([transcript])[0]).ids.tolist()


class TestLayout:
    def test_short_pair_matches_the_tokenizer_template(self, encoder, tokenizer_path):
        """Without truncation, a row equals tokenizers' own pair encoding, segment ids included."""
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        expected = tokenizer.encode("Rule: no violence.", "[judged] User: hello there")
        row = encoder.row(
            encoder.clause_ids("Rule: no violence."),
            encoder.transcript_ids(["[judged] User: hello there"])[0],
        )
        assert row.ids.tolist() == expected.ids
        assert row.type_ids.tolist() == expected.type_ids

    def test_long_pair_matches_the_contract(self, encoder, tokenizer_path):
        """A long clause is capped and a long transcript loses its beginning, exactly as specified."""
        clause = "violence weapons hate " * 20
        transcript = " ".join(f"word{n}" for n in range(300)) + " [judged] User: the end"
        row = _row(encoder, clause, transcript)
        assert row == _reference(tokenizer_path, clause, transcript)
        assert len(row) == MAX_LENGTH

    def test_judged_turn_at_the_end_survives(self, encoder, tokenizer_path):
        """The last tokens of the transcript are always kept."""
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tail = tokenizer.encode("harm the end", add_special_tokens=False).ids
        row = _row(encoder, "Rule: x", "old context " * 500 + "harm the end")
        assert row[-1 - len(tail) : -1] == tail

    def test_empty_transcript(self, encoder, tokenizer_path):
        """An empty transcript still gives a valid row: clause and special tokens only."""
        row = _row(encoder, "Rule: x", "")
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        assert row == [
            *tokenizer.post_process(tokenizer.encode("Rule: x", add_special_tokens=False), None).ids,
            row[-1],
        ]

    @pytest.mark.parametrize(
        "text",
        [
            "Как сделать бомбу? 如何制造炸弹? قنبلة 💣",
            "a\x00b\x07c\x1b[31md\u200be\ufeff\r\n\t",
            "\x00" * 100,
        ],
    )
    def test_non_english_and_control_characters(self, encoder, text):
        """Non-English text and control characters encode to valid ids within the vocabulary."""
        row = encoder.row(encoder.clause_ids("Rule: x"), encoder.transcript_ids([text])[0])
        assert row.ids.min() >= 0
        assert row.ids.max() < encoder.tokenizer.get_vocab_size()
        assert len(row.ids) <= MAX_LENGTH


class TestPreTrim:
    def test_long_text_equals_full_tokenization(self, encoder, tokenizer_path):
        """Pre-trimming a 200 kB text by characters gives the same ids as tokenizing all of it."""
        rng = np.random.default_rng(0)
        words = ["violence", "weapon", "hello", "policy", "the", "a", "harm", "xyzzy", "!", "content"]
        text = " ".join(rng.choice(words, size=40_000))
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        full = tokenizer.encode(text, add_special_tokens=False).ids
        assert encoder.transcript_ids([text])[0].tolist() == full[-encoder.transcript_budget :]

    def test_ten_megabytes_are_trimmed_before_tokenizing(self, encoder, monkeypatch):
        """A 10 MB message never reaches the tokenizer whole."""
        seen: list[int] = []
        monkeypatch.setattr(encoder, "tokenizer", _Spy(encoder.tokenizer, seen))
        ids = encoder.transcript_ids(["harmful words " * 750_000])[0]
        assert len(ids) == encoder.transcript_budget
        assert seen
        assert max(seen) < 10_000

    def test_mostly_whitespace_widens_the_window(self, encoder, tokenizer_path):
        """A text whose tail is whitespace is re-tokenized with a wider window so its words are still found."""
        text = "violence weapon " * 30 + " " * 5_000
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        full = tokenizer.encode(text, add_special_tokens=False).ids
        assert encoder.transcript_ids([text])[0].tolist() == full[-encoder.transcript_budget :]

    def test_huge_whitespace_is_bounded(self, encoder):
        """10 MB of whitespace with a word at each end costs a bounded window and keeps the last word."""
        ids = encoder.transcript_ids(["first" + " " * 10_000_000 + "violence"])[0]
        vocab = encoder.tokenizer.get_vocab()
        assert ids.tolist()[-1] == vocab["violence"]


class _Spy:
    """Records the length of every text handed to the tokenizer."""

    def __init__(self, inner: Tokenizer, seen: list[int]) -> None:
        self._inner = inner
        self._seen = seen

    def encode(self, text, **kwargs):
        self._seen.append(len(text))
        return self._inner.encode(text, **kwargs)

    def encode_batch(self, texts, **kwargs):
        self._seen.extend(len(t) for t in texts)
        return self._inner.encode_batch(texts, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class TestCaching:
    def test_clause_ids_are_cached_and_read_only(self, encoder):
        """The same clause text returns the same read-only array."""
        first = encoder.clause_ids("Rule: no medical advice.")
        assert encoder.clause_ids("Rule: no medical advice.") is first
        assert not first.flags.writeable
        assert len(encoder.clause_ids("word " * 500)) == MAX_CLAUSE


class TestBatches:
    def _rows(self, encoder, lengths):
        return [
            encoder.row(encoder.clause_ids("Rule: x"), encoder.transcript_ids(["a " * n])[0]) for n in lengths
        ]

    def test_every_row_once_and_padding_is_masked(self, encoder):
        """Buckets cover each row exactly once; masks mark real tokens and padding uses the pad id."""
        rows = self._rows(encoder, [3, 50, 7, 60, 2, 55, 30])
        seen = []
        for batch in encoder.batches(rows, max_batch=3, max_tokens=10_000):
            seen.extend(batch.indices)
            ids, mask = batch.feeds["input_ids"], batch.feeds["attention_mask"]
            assert ids.shape == mask.shape == batch.feeds["token_type_ids"].shape
            assert ids.shape[0] <= 3
            for position, index in enumerate(batch.indices):
                size = len(rows[index].ids)
                assert mask[position].sum() == size
                assert ids[position, :size].tolist() == rows[index].ids.tolist()
                assert (ids[position, size:] == encoder.pad_id).all()
        assert sorted(seen) == list(range(len(rows)))

    def test_buckets_group_similar_lengths(self, encoder):
        """Short rows are not padded to the longest row of the whole request."""
        rows = self._rows(encoder, [60, 58, 3, 2])
        shapes = [batch.feeds["input_ids"].shape for batch in encoder.batches(rows)]
        assert len(shapes) == 2
        assert min(shape[1] for shape in shapes) < 16

    def test_token_budget(self, encoder):
        """A batch never exceeds max_tokens padded tokens (unless a single row is longer)."""
        rows = self._rows(encoder, [60] * 10)
        for batch in encoder.batches(rows, max_batch=32, max_tokens=200):
            assert batch.feeds["input_ids"].size <= 200
