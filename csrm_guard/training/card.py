"""The data card of a build: counts per source, category, label, stage and split, and phrasing coverage.

Written as ``data_card.json`` (machine-readable) and ``data_card.md`` (what ``csrm-guard data build`` prints).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.data import SPLITS, Example

__all__ = ["data_card", "render_card", "write_card"]

logger = logging.getLogger(__name__)


def _nested(counter: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for (row, col), n in sorted(counter.items()):
        table.setdefault(row, {})[col] = n
    return table


def data_card(
    examples: Sequence[Example],
    files: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    benchmark: Sequence[Mapping[str, Any]],
    pairs_dev: Sequence[Mapping[str, Any]],
    heldout: Iterable[str],
    skipped: Mapping[str, str],
    seed: int,
) -> dict[str, Any]:
    """Summarise a build (see the module docstring); every table is keyed ``row -> split -> count``."""
    heldout_set = set(heldout)
    clause_rows = [(split, row) for split in SPLITS for row in files[f"{split}/clauses"]]
    coverage: dict[str, dict[str, int]] = {}
    for split, row in clause_rows:
        phrasing = str(row["phrasing"])
        family = phrasing.rsplit("/", 1)[0]
        tag = "heldout" if phrasing in heldout_set else "seen"
        cell = coverage.setdefault(family, {})
        cell[f"{split}:{tag}"] = cell.get(f"{split}:{tag}", 0) + 1
    return {
        "seed": seed,
        "taxonomy_version": load_taxonomy().version,
        "totals": {name: len(rows) for name, rows in sorted(files.items())}
        | {
            "examples": len(examples),
            "benchmarks/configurable-dev": len(benchmark),
            "benchmarks/pairs-dev": len(pairs_dev),
        },
        "examples_by_source": _nested(Counter((e.source, e.split) for e in examples)),
        "examples_by_stage": _nested(Counter((e.stage, e.split) for e in examples)),
        "examples_by_label": _nested(
            Counter(("harmful" if e.harmful else "safe", e.split) for e in examples)
        ),
        "examples_by_category": _nested(
            Counter((c, e.split) for e in examples for c in e.categories)
            + Counter(("(harmful, unknown)", e.split) for e in examples if e.harmful and not e.categories)
        ),
        "clauses_by_augmentation": _nested(
            Counter((f"{r['augmentation']}={r['label']}", s) for s, r in clause_rows)
        ),
        "clauses_by_kind": _nested(Counter((str(r["clause_kind"]), s) for s, r in clause_rows)),
        "clauses_by_label": _nested(Counter((str(r["label"]), s) for s, r in clause_rows)),
        "clauses_by_stage": _nested(Counter((str(r["stage"]), s) for s, r in clause_rows)),
        "clauses_by_source": _nested(Counter((str(r["source"]), s) for s, r in clause_rows)),
        "phrasing_coverage": dict(sorted(coverage.items())),
        "heldout_phrasings": len(heldout_set),
        "configurable_dev_labels": dict(sorted(Counter(str(r["label"]) for r in benchmark).items())),
        "skipped": dict(skipped),
    }


def _table(title: str, table: Mapping[str, Mapping[str, int]], columns: Sequence[str]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| | " + " | ".join(columns) + " | total |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for row, cells in table.items():
        values = [cells.get(c, 0) for c in columns]
        lines.append(f"| {row} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |")
    return [*lines, ""]


def render_card(card: Mapping[str, Any]) -> str:
    """Render the card as markdown."""
    lines = [
        "# Data card",
        "",
        f"seed {card['seed']}, taxonomy {card['taxonomy_version']}",
        "",
        "## Totals",
        "",
    ]
    lines += [f"- {name}: {n}" for name, n in card["totals"].items()]
    lines.append("")
    splits = list(SPLITS)
    for key, title in (
        ("examples_by_source", "Examples by source"),
        ("examples_by_stage", "Examples by stage"),
        ("examples_by_label", "Examples by label"),
        ("examples_by_category", "Examples by violated category"),
        ("clauses_by_source", "Clause rows by source"),
        ("clauses_by_augmentation", "Clause rows by augmentation=label"),
        ("clauses_by_kind", "Clause rows by kind"),
        ("clauses_by_label", "Clause rows by label"),
        ("clauses_by_stage", "Clause rows by stage"),
    ):
        lines += _table(title, card[key], splits)
    columns = [f"{s}:{t}" for s in splits for t in ("seen", "heldout")]
    lines += _table("Clause phrasing coverage (rows per phrasing family)", card["phrasing_coverage"], columns)
    lines += [
        f"Held-out phrasings: {card['heldout_phrasings']} (never in train); configurable-dev labels: "
        f"{card['configurable_dev_labels']}",
        "",
        "## Files not read",
        "",
    ]
    lines += [f"- `{path}`: {reason}" for path, reason in card["skipped"].items()] or ["- none"]
    return "\n".join(lines) + "\n"


def write_card(out: Path, card: Mapping[str, Any]) -> None:
    """Write ``data_card.json`` and ``data_card.md`` into ``out``."""
    (out / "data_card.json").write_text(
        json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "data_card.md").write_text(render_card(card), encoding="utf-8")
