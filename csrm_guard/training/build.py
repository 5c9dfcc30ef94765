"""The ``csrm-guard data build`` pipeline: adapters -> splits -> augmentation -> JSONL files and a data card.

The output layout is fixed in ``docs/contracts.md`` ("Data build output"). Re-running with the same inputs and seed
gives byte-identical files: every random choice comes from a generator seeded by the build seed and the example id,
rows are sorted by id, and nothing records a time or a path.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from csrm_guard.errors import DataError
from csrm_guard.policy.render import render_rule_clause, render_transcript
from csrm_guard.training.adapters import ADAPTERS, RULE_SOURCES, Adapter
from csrm_guard.training.adapters.rules import SeedRule, load_ifeval_rules
from csrm_guard.training.augment import GENERIC_RULES, Augmenter, heldout_phrasings
from csrm_guard.training.card import data_card, write_card
from csrm_guard.training.data import SPLITS, Example
from csrm_guard.training.hard_negatives import SOURCE as HARD_NEGATIVES
from csrm_guard.training.hard_negatives import hard_negative_examples
from csrm_guard.training.harmful_examples import SOURCE as HARMFUL_EXAMPLES
from csrm_guard.training.harmful_examples import harmful_examples
from csrm_guard.training.scenario_rules import foreign_rows, scenario_heldout, scenario_rows

__all__ = ["Budget", "build", "load_examples", "pairs_benchmark"]

logger = logging.getLogger(__name__)

_HAND_WRITTEN = frozenset({HARD_NEGATIVES, HARMFUL_EXAMPLES})


@dataclass(frozen=True, slots=True)
class Budget:
    """How many rows the build derives per example (the defaults give ~55k training clause rows).

    Attributes:
        harmful_rows: Clause rows per training example with a known violated category.
        other_rows: Clause rows per other training example.
        safe_input_keep: Share of safe input-stage training examples that get a row at all.
        eval_rows: Clause rows per dev/test example.
        pair_keep: Share of eligible training examples that give a strictness pair.
        safe_taxonomy_keep: Share of safe examples that give a taxonomy row.
        benchmark_rows: Held-out-configuration rows per dev example in ``configurable-dev``.
        taxonomy_negatives: Label categories a harmful turn is plainly not about as severity 0 in its severity
            row (off by default: with it, and ``safe_taxonomy_keep`` 0.5, the severity head's probabilities fell
            so low that BeaverTails recall under the default policy dropped from 0.87 to 0.28; model card).
        hard_negative_rows: Clause rows per training example of the hand-written hard negatives and harmful
            examples (every one of them is kept, input stage included).
        hard_negative_taxonomy: Every hand-written example gives a severity row, not ``safe_taxonomy_keep`` of the
            safe ones: they are the only safe examples whose severity is known in every category (off by default;
            an experiment after 1.2.0, model card).
        scenario_foreign_rows: ``scn:foreign`` rows per scenario family: its rule over conversations from the
            data sets, label 0 (:func:`~csrm_guard.training.scenario_rules.foreign_rows`; 0 turns them off).
    """

    harmful_rows: int = 3
    other_rows: int = 1
    safe_input_keep: float = 0.6
    eval_rows: int = 2
    pair_keep: float = 0.6
    safe_taxonomy_keep: float = 0.15
    benchmark_rows: int = 2
    taxonomy_negatives: bool = False
    hard_negative_rows: int = 4
    hard_negative_taxonomy: bool = False
    scenario_foreign_rows: int = 12


def load_examples(data_dir: Path, *, progress: bool = True) -> tuple[list[Example], dict[str, str]]:
    """Run every adapter whose folder exists under ``data_dir``.

    Returns:
        The examples sorted by id, and ``{folder: reason}`` for folders that were not read.

    Raises:
        DataError: When ``data_dir`` is missing, a file is malformed, or two examples share an id.
    """
    if not data_dir.is_dir():
        raise DataError("data directory not found (pass --data-dir)", source=str(data_dir))
    examples: list[Example] = []
    missing: dict[str, str] = {}
    for adapter in tqdm(ADAPTERS, desc="adapters", disable=not progress):
        folder = data_dir / adapter.name
        if not folder.is_dir():
            missing[adapter.name] = "folder absent"
            logger.warning("skipping %s: folder absent", folder)
            continue
        examples.extend(adapter.load(folder))
    examples.sort(key=lambda e: e.id)
    for before, after in itertools.pairwise(examples):
        if before.id == after.id:
            raise DataError(f"duplicate example id {after.id!r}", source=after.source)
    for extra in sorted(p.name for p in data_dir.iterdir() if p.is_dir()):
        if extra not in {a.name for a in ADAPTERS} | set(RULE_SOURCES):
            missing[extra] = "no adapter for this folder"
    return examples, missing


def _rows_for(example: Example, budget: Budget, rng: random.Random) -> int:
    if example.source in _HAND_WRITTEN:
        return budget.hard_negative_rows if example.split == "train" else budget.eval_rows
    if not example.harmful and example.stage == "input" and rng.random() >= budget.safe_input_keep:
        return 0
    if example.split != "train":
        return budget.eval_rows
    if example.harmful and example.categories:
        return budget.harmful_rows
    return budget.other_rows


def build(
    data_dir: Path, out: Path, *, seed: int = 13, budget: Budget | None = None, progress: bool = True
) -> dict[str, Any]:
    """Build every output file under ``out`` and return the data card.

    Args:
        data_dir: The shared data folder (``../shared/data``).
        out: The output folder (created; existing files are overwritten).
        seed: The build seed.
        budget: Rows per example (default :class:`Budget`).
        progress: Show tqdm progress bars.

    Returns:
        The data card (also written as ``data_card.json`` and ``data_card.md``).
    """
    budget = budget or Budget()
    examples, missing = load_examples(data_dir, progress=progress)
    examples = sorted([*examples, *hard_negative_examples(), *harmful_examples()], key=lambda e: e.id)
    seeds = _seed_rules(data_dir)
    augmenter = Augmenter(seeds, seed=seed)
    files: dict[str, list[dict[str, Any]]] = {
        f"{split}/{kind}": [] for split in SPLITS for kind in ("clauses", "pairs", "taxonomy")
    }
    benchmark: list[dict[str, Any]] = []
    for example in tqdm(examples, desc="augment", disable=not progress):
        split = example.split
        rng = augmenter.rng(example, "budget")
        files[f"{split}/clauses"].extend(
            augmenter.clause_rows(example, heldout_ok=split != "train", limit=_rows_for(example, budget, rng))
        )
        if split != "train" or rng.random() < budget.pair_keep:
            pair = augmenter.pair_row(example, heldout_ok=split != "train")
            if pair is not None:
                files[f"{split}/pairs"].append(pair)
        every = budget.hard_negative_taxonomy and example.source in _HAND_WRITTEN
        if example.harmful or rng.random() < budget.safe_taxonomy_keep or every:
            row = augmenter.taxonomy_row(example, negatives=budget.taxonomy_negatives)
            if row is not None:
                files[f"{split}/taxonomy"].append(row)
        if split == "dev" and example.source not in _HAND_WRITTEN:
            # configurable-dev stays a benchmark of the shared data sets, comparable across builds.
            for row in augmenter.clause_rows(
                example, heldout_ok=True, limit=budget.benchmark_rows, force_heldout=True
            ):
                benchmark.append({**row, "messages": [dict(m) for m in example.messages]})
    for split, rows in scenario_rows(seed).items():
        files[f"{split}/clauses"].extend(rows)
    if budget.scenario_foreign_rows:
        for split, rows in foreign_rows(examples, seed, per_family=budget.scenario_foreign_rows).items():
            files[f"{split}/clauses"].extend(rows)
    heldout = heldout_phrasings(seeds) | scenario_heldout()
    leaked = {r["phrasing"] for r in files["train/clauses"] if r["phrasing"] in heldout}
    if leaked:
        raise DataError(f"held-out phrasings reached training rows: {sorted(leaked)[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        _write_jsonl(out / f"{name}.jsonl", rows)
    _write_jsonl(out / "examples.jsonl", (e.to_json() for e in examples))
    _write_jsonl(out / "benchmarks" / "configurable-dev.jsonl", benchmark)
    pairs_dev = pairs_benchmark(examples, split="dev")
    _write_jsonl(out / "benchmarks" / "pairs-dev.jsonl", pairs_dev)
    card = data_card(
        examples,
        files,
        benchmark=benchmark,
        pairs_dev=pairs_dev,
        heldout=heldout,
        skipped=_skipped(ADAPTERS, missing),
        seed=seed,
    )
    write_card(out, card)
    return card


def _seed_rules(data_dir: Path) -> list[SeedRule]:
    folder = data_dir / "dynaguard-ifeval-rules"
    return load_ifeval_rules(folder) if folder.is_dir() else []


def _skipped(adapters: Sequence[Adapter], missing: dict[str, str]) -> dict[str, str]:
    skipped = {f"{a.name}/{path}": reason for a in adapters for path, reason in a.skipped}
    skipped.update({f"{name}/": reason for name, reason in missing.items()})
    return dict(sorted(skipped.items()))


def pairs_benchmark(examples: Iterable[Example], *, split: str) -> list[dict[str, Any]]:
    """Preference pairs (safer vs less safe response to one prompt) from PKU-SafeRLHF and SPARD in ``split``.

    Labels are the sources' own (their safe/unsafe sides), not the refusal-adjusted example labels.
    """
    sides: dict[str, dict[str, Example]] = {}
    for example in examples:
        if example.split == split and "pair" in example.meta:
            sides.setdefault(f"{example.source}:{example.meta['pair']}", {})[example.meta["side"]] = example
    clause = render_rule_clause(GENERIC_RULES["g4"])
    rows = []
    for key, pair in sorted(sides.items()):
        safe, unsafe = pair.get("safe"), pair.get("unsafe")
        if safe is None or unsafe is None:
            continue
        rows.append(
            {
                "id": key,
                "conversation_id": safe.conversation_id,
                "source": safe.source,
                "messages": [dict(m) for m in safe.context],
                "safer": safe.judged,
                "less_safe": unsafe.judged,
                "clause": clause,
                "transcript_safer": render_transcript(safe.messages, stage="output"),
                "transcript_less_safe": render_transcript(unsafe.messages, stage="output"),
            }
        )
    return rows


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: str(r["id"]))
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in ordered:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
