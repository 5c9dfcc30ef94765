"""Text moderation sets judged as user input: OpenAI moderation evaluation set and ToxicChat.

OpenAI's eight flags are multi-label (a missing key is unknown); the escalated sub-categories H2 (hate/threatening)
and V2 (graphic violence) set severity. ToxicChat gives binary toxicity (and a jailbreaking flag on part of it);
categories of toxic prompts come from keyword rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from csrm_guard.errors import DataError
from csrm_guard.training.adapters._common import infer_categories, prompt_example, read_json, read_jsonl
from csrm_guard.training.data import Example

__all__ = ["OPENAI_MAP", "load_openai_moderation", "load_toxicchat", "openai_labels"]

logger = logging.getLogger(__name__)

OPENAI_MAP: dict[str, str] = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self_harm",
    "S3": "sexual_minors",
    "H2": "hate",
    "V2": "violence",
}
"""OpenAI moderation flag -> taxonomy category."""


def openai_labels(row: dict[str, object]) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """Return (violated categories, covered categories, severity hints) for one OpenAI moderation row.

    H2 makes hate high and adds violence at high (hate/threatening includes violence against the group); V2
    (graphic violence) makes violence at least moderate, per the taxonomy rubric.
    """
    flags = {key: row[key] for key in OPENAI_MAP if key in row}
    covered = tuple(dict.fromkeys(OPENAI_MAP[key] for key in flags))
    violated = [OPENAI_MAP[key] for key, value in flags.items() if value == 1]
    hints: dict[str, int] = {}
    if flags.get("H2") == 1:
        hints.update({"hate": 3, "violence": 3})
        violated.append("violence")
    if flags.get("V2") == 1:
        hints["violence"] = max(hints.get("violence", 0), 2)
    if flags.get("S3") == 1:
        hints["sexual_minors"] = 3
    return tuple(dict.fromkeys(violated)), covered, hints


def load_openai_moderation(folder: Path) -> Iterator[Example]:
    """Yield input-stage examples from ``samples-1680.jsonl.gz``."""
    path = folder / "samples-1680.jsonl.gz"
    for number, row in read_jsonl(path):
        if not isinstance(row.get("prompt"), str):
            raise DataError("missing 'prompt'", source=str(path), row=number)
        violated, covered, hints = openai_labels(row)
        yield prompt_example(
            "openai-moderation",
            str(number),
            row["prompt"],
            harmful=bool(violated),
            categories=violated,
            exhaustive=True,
            covered=covered,
            hints=hints,
            meta={"flags": ",".join(k for k in OPENAI_MAP if row.get(k) == 1)},
        )


def load_toxicchat(folder: Path) -> Iterator[Example]:
    """Yield input-stage examples from the ToxicChat test set (wizard101 copy) and the JUDGE-BENCH train set.

    The JUDGE-BENCH test file holds the same prompts as the wizard101 test set; it is read only for its
    ``jailbreaking`` flags.
    """
    jailbreaking: dict[str, str] = {}
    for name in ("toxic_chat_test.json", "toxic_chat_train.json"):
        for item in _judge_bench(folder / "judge-bench" / name):
            jailbreaking[item["instance"]] = item["annotations"]["jailbreaking"]["majority_human"]
    path = folder / "wizard101" / "toxicchat_test.json"
    rows = [(row["text"], row["label"] == "harmful", f"test:{n}") for n, row in enumerate(read_json(path))]
    train_path = folder / "judge-bench" / "toxic_chat_train.json"
    rows += [
        (item["instance"], item["annotations"]["toxicity"]["majority_human"] == "1", f"train:{n}")
        for n, item in enumerate(_judge_bench(train_path))
    ]
    for text, toxic, key in rows:
        if not text.strip():
            continue
        yield prompt_example(
            "toxicchat",
            key,
            text,
            harmful=toxic,
            categories=infer_categories(text) if toxic else (),
            meta={"toxicity": str(int(toxic)), "jailbreaking": jailbreaking.get(text, "unknown")},
        )


def _judge_bench(path: Path) -> list[Any]:
    data = read_json(path)
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, list):
        raise DataError("expected an object with an 'instances' list", source=str(path))
    return instances
