"""BeaverTails family: BeaverTails 30k-test (14 harm categories), SPARD safe/unsafe triples, PKU-SafeRLHF pairs.

All three judge responses (output stage). BeaverTails is multi-label over its 14 categories; SPARD and PKU carry only
a harmful/safe label per response, so categories of their harmful responses come from keyword rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.errors import DataError
from csrm_guard.training.adapters._common import choose, infer_categories, read_jsonl, response_example
from csrm_guard.training.data import Example

__all__ = ["BEAVERTAILS_MAP", "beavertails_categories", "load_beavertails", "load_pku", "load_spard"]

logger = logging.getLogger(__name__)

BEAVERTAILS_MAP: dict[str, tuple[str, ...] | None] = {
    "animal_abuse": ("violence",),
    "child_abuse": ("violence",),
    "controversial_topics,politics": ("controversial_topics",),
    "discrimination,stereotype,injustice": ("hate",),
    "drug_abuse,weapons,banned_substance": None,  # split by keywords: weapons, else drugs
    "financial_crime,property_crime,theft": ("crime_nonviolent",),
    "hate_speech,offensive_language": None,  # split by keywords: hate (group), profanity, else harassment
    "misinformation_regarding_ethics,laws_and_safety": ("misinformation",),
    "non_violent_unethical_behavior": ("unethical_behavior",),
    "privacy_violation": ("privacy",),
    "self_harm": ("self_harm",),
    "sexually_explicit,adult_content": ("sexual",),
    "terrorism,organized_crime": ("extremism",),
    "violence,aiding_and_abetting,incitement": ("violence",),
}
"""BeaverTails category -> taxonomy categories; ``None`` means decided per row by keyword rules."""

_COVERED = (
    "violence",
    "controversial_topics",
    "hate",
    "weapons",
    "drugs",
    "crime_nonviolent",
    "harassment",
    "profanity",
    "misinformation",
    "unethical_behavior",
    "privacy",
    "self_harm",
    "sexual",
    "extremism",
)


def beavertails_categories(flags: dict[str, bool], text: str) -> tuple[str, ...]:
    """Map a BeaverTails category-flag dict onto taxonomy categories (keyword rules for the two mixed labels)."""
    found: list[str] = []
    for label, on in sorted(flags.items()):
        if not on:
            continue
        if label not in BEAVERTAILS_MAP:
            raise DataError(f"unknown BeaverTails category {label!r}")
        mapped = BEAVERTAILS_MAP[label]
        if mapped is None and label.startswith("drug_abuse"):
            mapped = choose(text, ("weapons", "drugs"), "drugs")
        elif mapped is None:
            mapped = choose(text, ("hate", "profanity"), "harassment")
        found.extend(mapped)
    return tuple(dict.fromkeys(found))


def load_beavertails(folder: Path) -> Iterator[Example]:
    """Yield output-stage examples from ``beavertails_30k_test_dev.jsonl``."""
    path = folder / "beavertails_30k_test_dev.jsonl"
    for number, row in read_jsonl(path):
        try:
            prompt, response, safe, flags = row["prompt"], row["response"], row["is_safe"], row["category"]
        except KeyError as exc:
            raise DataError(f"missing field {exc}", source=str(path), row=number) from exc
        categories = beavertails_categories(flags, f"{prompt}\n{response}")
        yield response_example(
            "beavertails",
            str(number),
            prompt,
            response,
            harmful=not safe,
            categories=categories,
            exhaustive=True,
            covered=_COVERED,
            meta={"labels": ",".join(sorted(k for k, v in flags.items() if v)), "is_safe": str(safe)},
        )


def _pairs(source: str, path: Path, safe_key: str, unsafe_key: str) -> Iterator[Example]:
    for number, row in read_jsonl(path):
        try:
            prompt, safe, unsafe = row["prompt"], row[safe_key], row[unsafe_key]
        except KeyError as exc:
            raise DataError(f"missing field {exc}", source=str(path), row=number) from exc
        categories = infer_categories(f"{prompt}\n{unsafe}")
        key = f"{path.stem}:{number}"
        yield response_example(
            source,
            f"{key}:safe",
            prompt,
            safe,
            harmful=False,
            categories=categories,
            meta={"pair": key, "side": "safe"},
        )
        yield response_example(
            source,
            f"{key}:unsafe",
            prompt,
            unsafe,
            harmful=True,
            categories=categories,
            meta={"pair": key, "side": "unsafe"},
        )


def load_spard(folder: Path) -> Iterator[Example]:
    """Yield both sides of every SPARD triple (train and test files) as output-stage examples."""
    for name in ("beaverTails_train.jsonl", "beaverTails_test.jsonl"):
        yield from _pairs("beavertails-pairs-spard", folder / name, "safe", "unsafe")


def load_pku(folder: Path) -> Iterator[Example]:
    """Yield both sides of every PKU-SafeRLHF pair as output-stage examples."""
    yield from _pairs(
        "pku-saferlhf",
        folder / "pku_saferlhf_test_safety_pairs_1000.jsonl",
        "safe_response",
        "unsafe_response",
    )
