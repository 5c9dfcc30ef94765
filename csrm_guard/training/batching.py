"""Read ``data build`` output, encode it as the runtime does, and cut length-bucketed mixed batches.

Encoding follows the bundle contract (docs/contracts.md): ``[CLS] first [SEP] transcript [SEP]``, the first
segment
(a clause or the taxonomy query) capped at ``max_clause_tokens``, the transcript truncated from the *left* so
that
the judged turn, which is last, survives; ``token_type_ids`` are 0 up to the first ``[SEP]`` and 1 after.

Three kinds of items share one stream: clause rows (one sequence, a 0/1 label), taxonomy rows (one sequence, a
severity rank per category) and strictness pairs (two sequences on the same transcript). Items are shuffled,
sorted
by length inside large chunks and cut into batches of about ``batch_size`` sequences, so each batch mixes the
kinds
in proportion and pads little.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

from csrm_guard.errors import DataError
from csrm_guard.evaluation.datasets import iter_jsonl

__all__ = ["Item", "PairEncoder", "collate", "iterate", "load_items", "make_batches", "read_jsonl"]

ItemKind = Literal["clause", "taxonomy", "pair"]
_CHARS_PER_TOKEN = 8  # pre-trim long transcripts by characters: hard truncation of huge inputs is slow


class PairEncoder:
    """Encode ``(first, transcript)`` pairs with the bundle's truncation rules.

    Args:
        tokenizer: A WordPiece tokenizer (``tokenizer.json``); padding and truncation are switched off here.
        max_length: Total tokens including the three special tokens.
        max_clause_tokens: Cap on the first segment's tokens.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int = 256, max_clause_tokens: int = 96) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_clause_tokens = max_clause_tokens
        self.cls_id = self._special("[CLS]")
        self.sep_id = self._special("[SEP]")

    def _special(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise DataError(f"the tokenizer has no {token} token")
        return int(token_id)

    def encode(self, firsts: Sequence[str], seconds: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Encode pairs; return ``(input_ids, token_type_ids)`` per pair, unpadded."""
        keep = self.max_length * _CHARS_PER_TOKEN
        first_ids = self.tokenizer.encode_batch(list(firsts), add_special_tokens=False)
        second_ids = self.tokenizer.encode_batch([s[-keep:] for s in seconds], add_special_tokens=False)
        out = []
        for first, second in zip(first_ids, second_ids, strict=True):
            head = first.ids[: self.max_clause_tokens]
            room = self.max_length - len(head) - 3
            tail = second.ids[-room:] if room > 0 else []
            ids = [self.cls_id, *head, self.sep_id, *tail, self.sep_id]
            out.append((ids, [0] * (len(head) + 2) + [1] * (len(tail) + 1)))
        return out


@dataclass(slots=True)
class Item:
    """One training or evaluation item: one or two encoded sequences and its target."""

    kind: ItemKind
    seqs: list[tuple[list[int], list[int]]]
    label: float = 0.0
    severity: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """The longest sequence of the item."""
        return max(len(ids) for ids, _ in self.seqs)


def read_jsonl(path: Path, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Read a JSONL file, optionally a seeded random sample of ``limit`` rows.

    Raises:
        DataError: When the file is missing or a line is not a JSON object.
    """
    rows = [row for _, row in iter_jsonl(path)]
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)  # noqa: S311 - sampling, not security
    return rows


def _field(row: dict[str, Any], name: str, source: str) -> Any:
    if name not in row:
        raise DataError(f"row {row.get('id', '?')} lacks field {name!r}", source=source)
    return row[name]


def load_items(
    split_dir: Path,
    encoder: PairEncoder,
    categories: Sequence[str],
    *,
    taxonomy_query: str,
    limits: dict[str, int | None],
    seed: int = 0,
    unconditioned: bool = False,
) -> list[Item]:
    """Load and encode the clause, taxonomy and pair rows of one split folder.

    Args:
        split_dir: ``DIR/train``, ``DIR/dev`` or ``DIR/test``.
        encoder: The pair encoder.
        categories: Category order of the severity head.
        taxonomy_query: First segment of taxonomy-mode inputs.
        limits: Maximum rows per kind (``clauses``, ``taxonomy``, ``pairs``); ``None`` keeps all, 0 skips.
        seed: Sampling seed.
        unconditioned: Drop the clause text (baseline: the encoder sees the transcript only); skips pairs and
            taxonomy rows.

    Returns:
        The encoded items.
    """
    items: list[Item] = []
    clauses = read_jsonl(split_dir / "clauses.jsonl", limits.get("clauses"), seed)
    src = str(split_dir / "clauses.jsonl")
    firsts = ["" if unconditioned else _field(r, "clause", src) for r in clauses]
    encoded = encoder.encode(firsts, [_field(r, "transcript", src) for r in clauses])
    for row, seq in zip(clauses, encoded, strict=True):
        meta = {k: row.get(k) for k in ("id", "source", "stage", "clause_kind", "category", "phrasing")}
        items.append(Item("clause", [seq], label=float(_field(row, "label", src)), meta=meta))
    if unconditioned:
        return items
    if limits.get("taxonomy") != 0 and (split_dir / "taxonomy.jsonl").exists():
        items.extend(_taxonomy_items(split_dir, encoder, categories, taxonomy_query, limits, seed))
    if limits.get("pairs") != 0 and (split_dir / "pairs.jsonl").exists():
        pairs = read_jsonl(split_dir / "pairs.jsonl", limits.get("pairs"), seed)
        src = str(split_dir / "pairs.jsonl")
        transcripts = [_field(r, "transcript", src) for r in pairs]
        stricter = encoder.encode([_field(r, "stricter", src) for r in pairs], transcripts)
        laxer = encoder.encode([_field(r, "laxer", src) for r in pairs], transcripts)
        for row, s, lx in zip(pairs, stricter, laxer, strict=True):
            items.append(Item("pair", [s, lx], meta={"id": row.get("id"), "source": row.get("source")}))
    return items


def _taxonomy_items(  # noqa: PLR0917 - private
    split_dir: Path,
    encoder: PairEncoder,
    categories: Sequence[str],
    taxonomy_query: str,
    limits: dict[str, int | None],
    seed: int,
) -> list[Item]:
    rows = read_jsonl(split_dir / "taxonomy.jsonl", limits.get("taxonomy"), seed)
    src = str(split_dir / "taxonomy.jsonl")
    encoded = encoder.encode([taxonomy_query] * len(rows), [_field(r, "transcript", src) for r in rows])
    items = []
    for row, seq in zip(rows, encoded, strict=True):
        severity = _field(row, "severity", src)
        vector = [int(severity.get(c, -1)) for c in categories]
        meta = {"id": row.get("id"), "source": row.get("source"), "stage": row.get("stage")}
        items.append(Item("taxonomy", [seq], severity=vector, meta=meta))
    return items


def make_batches(items: Sequence[Item], batch_size: int, seed: int, chunk: int = 64) -> list[list[Item]]:
    """Cut items into length-bucketed batches of about ``batch_size`` sequences, in a seeded random order."""
    rng = random.Random(seed)  # noqa: S311 - shuffling, not security
    order = list(items)
    rng.shuffle(order)
    batches: list[list[Item]] = []
    span = batch_size * chunk
    for start in range(0, len(order), span):
        block = sorted(order[start : start + span], key=lambda item: item.length)
        current: list[Item] = []
        count = 0
        for item in block:
            if current and count + len(item.seqs) > batch_size:
                batches.append(current)
                current, count = [], 0
            current.append(item)
            count += len(item.seqs)
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(batch: Sequence[Item], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence and index its items by kind."""
    seqs: list[tuple[list[int], list[int]]] = []
    index: dict[str, list[int]] = {"clause_idx": [], "taxonomy_idx": [], "stricter_idx": [], "laxer_idx": []}
    labels: list[float] = []
    severity: list[list[int]] = []
    for item in batch:
        position = len(seqs)
        seqs.extend(item.seqs)
        if item.kind == "clause":
            index["clause_idx"].append(position)
            labels.append(item.label)
        elif item.kind == "taxonomy":
            index["taxonomy_idx"].append(position)
            severity.append(item.severity)
        else:
            index["stricter_idx"].append(position)
            index["laxer_idx"].append(position + 1)
    width = max(len(ids) for ids, _ in seqs)
    out = {
        "input_ids": torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in seqs]),
        "token_type_ids": torch.tensor([types + [0] * (width - len(types)) for _, types in seqs]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in seqs]),
        "labels": torch.tensor(labels, dtype=torch.float32),
        "severity": torch.tensor(severity, dtype=torch.long)
        if severity
        else torch.zeros(0, 1, dtype=torch.long),
    }
    out.update({name: torch.tensor(values, dtype=torch.long) for name, values in index.items()})
    return out


def iterate(batches: Sequence[list[Item]], start: int = 0) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield ``(batch_number, collated_batch)`` from ``start`` on (resume skips the batches already seen)."""
    for number in range(start, len(batches)):
        yield number, collate(batches[number])
