"""The data build: contract fields, no leakage between splits, byte-identical reruns, data card totals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csrm_guard.errors import DataError
from csrm_guard.training.augment import heldout_phrasings
from csrm_guard.training.build import Budget, build
from csrm_guard.training.data import SPLITS
from csrm_guard.training.hard_negatives import SOURCE as HARD_NEGATIVES

FIELDS = {
    "clauses": {"id", "conversation_id", "source", "stage", "clause", "clause_kind", "category", "transcript",
                "label", "phrasing", "augmentation"},
    "pairs": {"id", "conversation_id", "source", "transcript", "stricter", "laxer", "category"},
    "taxonomy": {"id", "conversation_id", "source", "stage", "transcript", "severity"},
}  # fmt: skip
TOPICS = [
    "steal a car", "poison a dog", "hack an email account", "make meth", "insult my coworker",
    "find someone's address", "cheat on an exam", "build a gun", "write a racist joke", "start a fire",
]  # fmt: skip


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(name="data_dir")
def _data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    flags = {"violence,aiding_and_abetting,incitement": True, "financial_crime,property_crime,theft": False}
    beaver = []
    for n in range(60):
        topic = TOPICS[n % len(TOPICS)]
        safe = n % 3 == 0
        beaver.append({"prompt": f"How do I {topic}? (variant {n})",
                       "response": "I can't help with that." if safe else f"First, to {topic} you need a plan.",
                       "category": {k: (v and not safe) for k, v in flags.items()}, "is_safe": safe})  # fmt: skip
    _write(
        root / "beavertails" / "beavertails_30k_test_dev.jsonl", "".join(json.dumps(r) + "\n" for r in beaver)
    )
    pairs = [
        {
            "prompt": f"Tell me how to {TOPICS[n % 10]} quickly, case {n}",
            "safe_response": "No, sorry.",
            "unsafe_response": f"Sure: to {TOPICS[n % 10]}, start by gathering tools.",
        }
        for n in range(40)
    ]
    _write(
        root / "pku-saferlhf" / "pku_saferlhf_test_safety_pairs_1000.jsonl",
        "".join(json.dumps(r) + "\n" for r in pairs),
    )
    rules = [
        {"key": 1, "rules": "1. Do not use any commas.\n2. Answer in all caps.\n3. Use less than 50 words."}
    ]
    _write(
        root / "dynaguard-ifeval-rules" / "ifeval_rules.jsonl", "".join(json.dumps(r) + "\n" for r in rules)
    )
    return root


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestBuild:
    def test_files_follow_the_contract(self, data_dir, tmp_path):
        """Every split file exists and its rows carry exactly the contract's fields."""
        out = tmp_path / "out"
        build(data_dir, out, progress=False)
        for split in SPLITS:
            for kind, fields in FIELDS.items():
                for row in _read(out / split / f"{kind}.jsonl"):
                    assert set(row) == fields
        assert (out / "benchmarks" / "configurable-dev.jsonl").is_file()
        assert (out / "data_card.md").read_text().startswith("# Data card")

    def test_no_conversation_or_heldout_phrasing_leaks(self, data_dir, tmp_path):
        """No conversation id appears in two splits, and no held-out phrasing reaches training rows."""
        out = tmp_path / "out"
        build(data_dir, out, progress=False)
        owners: dict[str, str] = {}
        for split in SPLITS:
            for kind in FIELDS:
                for row in _read(out / split / f"{kind}.jsonl"):
                    assert owners.setdefault(row["conversation_id"], split) == split
        assert len(set(owners.values())) >= 2
        train = {row["phrasing"] for row in _read(out / "train" / "clauses.jsonl")}
        assert train
        assert not train & heldout_phrasings()
        for row in _read(out / "benchmarks" / "configurable-dev.jsonl"):
            assert owners.get(row["conversation_id"], "dev") == "dev"
        for row in _read(out / "benchmarks" / "pairs-dev.jsonl"):
            assert owners.get(row["conversation_id"], "dev") == "dev"

    def test_rerun_is_byte_identical(self, data_dir, tmp_path):
        """Two builds with the same inputs and seed write identical bytes."""
        first, second = tmp_path / "a", tmp_path / "b"
        build(data_dir, first, progress=False)
        build(data_dir, second, progress=False)
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files
        assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)

    def test_card_counts_match_files_and_lists_skips(self, data_dir, tmp_path):
        """The card's totals equal the files' line counts and absent folders are listed with a reason."""
        out = tmp_path / "out"
        card = build(data_dir, out, progress=False)
        for split in SPLITS:
            for kind in FIELDS:
                assert card["totals"][f"{split}/{kind}"] == len(_read(out / split / f"{kind}.jsonl"))
        assert card["skipped"]["advbench/"] == "folder absent"
        assert card["examples_by_source"]["pku-saferlhf"]

    def test_hard_negatives_join_every_split_and_optionally_the_severity_rows(self, data_dir, tmp_path):
        """Hard negatives give clause rows in every split but no benchmark row; with the option, each gives a
        severity row."""
        plain, every = tmp_path / "plain", tmp_path / "every"
        build(data_dir, plain, progress=False)
        build(data_dir, every, budget=Budget(hard_negative_taxonomy=True), progress=False)
        examples = [r for r in _read(plain / "examples.jsonl") if r["source"] == HARD_NEGATIVES]
        for split in SPLITS:
            assert any(r["source"] == HARD_NEGATIVES for r in _read(plain / split / "clauses.jsonl"))
            wanted = {r["id"] for r in examples if r["split"] == split}
            rows = {r["id"].split("#")[0] for r in _read(every / split / "taxonomy.jsonl")}
            assert wanted <= rows
            fewer = {r["id"].split("#")[0] for r in _read(plain / split / "taxonomy.jsonl")}
            assert len(wanted & fewer) < len(wanted) / 2
            same = (plain / split / "clauses.jsonl").read_bytes() == (
                every / split / "clauses.jsonl"
            ).read_bytes()
            assert same
        assert all(
            r["source"] != HARD_NEGATIVES for r in _read(plain / "benchmarks" / "configurable-dev.jsonl")
        )

    def test_foreign_scenario_rows_follow_the_budget(self, data_dir, tmp_path):
        """`scenario_foreign_rows` adds label-0 `scn:foreign` rows to the clause files; 0 adds none."""
        with_rows, without = tmp_path / "with", tmp_path / "without"
        build(data_dir, with_rows, budget=Budget(scenario_foreign_rows=3), progress=False)
        build(data_dir, without, budget=Budget(scenario_foreign_rows=0), progress=False)
        foreign = [
            r
            for split in SPLITS
            for r in _read(with_rows / split / "clauses.jsonl")
            if r["augmentation"] == "scn:foreign"
        ]
        assert foreign
        assert {r["label"] for r in foreign} == {0}
        assert not [
            r
            for split in SPLITS
            for r in _read(without / split / "clauses.jsonl")
            if r["augmentation"] == "scn:foreign"
        ]

    def test_missing_data_dir(self, tmp_path):
        """A missing data folder is a clear DataError."""
        with pytest.raises(DataError, match="data directory not found"):
            build(tmp_path / "nope", tmp_path / "out", progress=False)
