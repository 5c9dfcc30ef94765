"""Measure the weak severity labels against the hand-labelled sample (``benchmarks/severity-sample-v1.jsonl``).

A sample row references a raw item by ``source``, ``file``, ``row`` (0-based), ``key`` and ``field`` (see
``benchmarks/README.md``); :func:`example_id_for` turns that reference into the id the adapter gave the item.
Items whose weak label is unknown for the hand-labelled category are counted as uncovered, not as disagreements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from csrm_guard.errors import DataError
from csrm_guard.training.severity import agreement, level_of

__all__ = ["example_id_for", "measure_agreement"]

logger = logging.getLogger(__name__)


def example_id_for(ref: Mapping[str, Any]) -> str:
    """Return the example id of the raw item a severity-sample row references.

    Raises:
        DataError: When the source or file is not one the sample scheme covers.
    """
    source, file, key, field = ref["source"], ref["file"], ref.get("key"), ref.get("field")
    row = int(ref.get("row") or 0)
    if source == "beavertails":
        return f"beavertails:{row + 1}"
    if source == "pku-saferlhf":
        side = "safe" if field == "safe_response" else "unsafe"
        return f"pku-saferlhf:pku_saferlhf_test_safety_pairs_1000:{row + 1}:{side}"
    if source == "do-not-answer":
        return f"do-not-answer:{key}:{str(field).removesuffix('_response')}"
    if source == "openai-moderation":
        return f"openai-moderation:{row + 1}"
    if source == "aegis" and str(file).endswith("aegis_900.csv"):
        return f"aegis:v2:{key}" + (":response" if field == "instruct_response" else "")
    if source == "aegis":
        return f"aegis:v1:{row}"
    raise DataError(f"severity sample reference to an unsupported source {source!r}", source=str(file))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", source=str(path)) from exc


def measure_agreement(sample_path: Path, examples_path: Path) -> dict[str, Any]:
    """Compare hand severity labels with the weak labels of the built examples.

    Items with a ``null`` category are compared on "any category": hand ``none`` against the highest known weak
    level.

    Args:
        sample_path: The hand-labelled sample.
        examples_path: ``examples.jsonl`` of a data build.

    Returns:
        The :class:`~csrm_guard.training.severity.Agreement` fields plus ``uncovered`` (weak label unknown),
        ``missing`` (reference not found) and per-item ``items``.
    """
    sample = _read_jsonl(sample_path)
    wanted = {example_id_for(row): row for row in sample}
    weak: dict[str, dict[str, int]] = {}
    with examples_path.open(encoding="utf-8") as handle:
        for line in handle:
            # Cheap prefilter: only parse the few lines that belong to a sampled source.
            if any(f'"id": "{source}:' in line[:200] for source in _SOURCES):
                row = json.loads(line)
                if row["id"] in wanted:
                    weak[row["id"]] = row["severity"]
    pairs: list[tuple[int, int]] = []
    items, uncovered, missing = [], 0, []
    for example_id, row in wanted.items():
        if example_id not in weak:
            missing.append(row["id"])
            continue
        hand = level_of(row["severity"])
        levels = weak[example_id]
        known = [v for v in levels.values() if v >= 0]
        value = levels.get(row["category"], -1) if row["category"] else (max(known) if known else -1)
        items.append(
            {
                "id": row["id"],
                "example_id": example_id,
                "category": row["category"],
                "hand": hand,
                "weak": value,
            }
        )
        if value < 0:
            uncovered += 1
            continue
        pairs.append((hand, value))
    result = asdict(agreement(pairs))
    result.update(uncovered=uncovered, missing=sorted(missing), sample=len(sample), items=items)
    return result


_SOURCES = ("beavertails", "pku-saferlhf", "do-not-answer", "openai-moderation", "aegis")
