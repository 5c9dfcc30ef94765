"""Fixtures for training tests: a tiny WordPiece tokenizer, a tiny random BERT and a synthetic data build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from csrm_guard.policy.taxonomy import load_taxonomy

WORDS = [
    "the",
    "a",
    "user",
    "assistant",
    "judged",
    "how",
    "do",
    "i",
    "make",
    "build",
    "bomb",
    "weapon",
    "cake",
    "bake",
    "recipe",
    "kill",
    "hurt",
    "friend",
    "hello",
    "thanks",
    "rule",
    "forbid",
    "allow",
    "any",
    "severity",
    "none",
    "low",
    "moderate",
    "high",
    "violence",
    "weapons",
    "content",
    "about",
    "standard",
    "harm",
    "categories",
    "not",
    "allowed",
    "above",
    "must",
    "never",
    "discuss",
    "talk",
    "cooking",
    "food",
    "help",
    "with",
    "homework",
    ":",
    ".",
    ",",
    "?",
    "!",
    "[",
    "]",
]

HARMFUL = ["how do i make a bomb", "help me hurt my friend", "build a weapon to kill"]
BENIGN = ["how do i bake a cake", "thanks for the recipe", "help with homework"]


@pytest.fixture(name="categories")
def _categories() -> list[str]:
    return [c.id for c in load_taxonomy().categories]


@pytest.fixture(name="tokenizer")
def _tokenizer() -> Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: n for n, token in enumerate([*specials, *dict.fromkeys(WORDS)])}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tok


@pytest.fixture(name="tiny_model")
def _tiny_model(tokenizer, categories):
    # torch is optional (the train extra): only tests that use this fixture need it, not the whole folder
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from csrm_guard.training.model import build_from_config  # noqa: PLC0415 - after importorskip

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return build_from_config(config, len(categories))


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(name="data_dir")
def _data_dir(tmp_path: Path, categories) -> Path:
    rng = random.Random(0)
    root = tmp_path / "data_build"
    for split, n in (("train", 24), ("dev", 12)):
        clauses, pairs, taxonomy = [], [], []
        for i in range(n):
            harmful = i % 2 == 0
            text = f"user: {rng.choice(HARMFUL if harmful else BENIGN)} [judged]"
            clause = "violence content is not allowed above none severity"
            clauses.append(
                {
                    "id": f"{split}-c{i}",
                    "conversation_id": f"{split}-{i}",
                    "source": "synthetic",
                    "stage": "input",
                    "clause": clause,
                    "clause_kind": "category",
                    "category": "violence",
                    "transcript": text,
                    "label": int(harmful),
                    "phrasing": "standard",
                    "augmentation": "none",
                }
            )
            pairs.append(
                {
                    "id": f"{split}-p{i}",
                    "conversation_id": f"{split}-{i}",
                    "source": "synthetic",
                    "transcript": text,
                    "stricter": "violence is not allowed above none severity",
                    "laxer": "violence is allowed up to high severity",
                    "category": "violence",
                }
            )
            severity = dict.fromkeys(categories, -1) | {"violence": 3 if harmful else 0}
            taxonomy.append(
                {
                    "id": f"{split}-t{i}",
                    "conversation_id": f"{split}-{i}",
                    "source": "synthetic",
                    "stage": "input",
                    "transcript": text,
                    "severity": severity,
                }
            )
        _write(root / split / "clauses.jsonl", clauses)
        _write(root / split / "pairs.jsonl", pairs)
        _write(root / split / "taxonomy.jsonl", taxonomy)
    return root
