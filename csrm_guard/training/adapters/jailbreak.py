"""Jailbreak sets with judged responses: JailbreakBench artifacts and GPTFuzz labelled responses.

JailbreakBench: every (method, target model) file answers the same 100 goals; each jailbreak prompt gives an
input-stage example (harmful, the goal's category) and each response an output-stage example labelled by the
JailbreakBench judge (``jailbroken``). Conversations are grouped by goal, so every attack on one goal shares a split.
GPTFuzz: human labels of responses to 100 harmful questions (the jailbreak templates are not in the files).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.errors import DataError
from csrm_guard.training.adapters._common import (
    choose,
    infer_categories,
    prompt_example,
    read_csv,
    read_json,
    response_example,
)
from csrm_guard.training.data import Example

__all__ = ["JBB_MAP", "jbb_categories", "load_gptfuzz", "load_jailbreakbench"]

logger = logging.getLogger(__name__)

JBB_MAP: dict[str, tuple[tuple[str, ...], str]] = {
    "Harassment/Discrimination": (("defamation", "hate"), "harassment"),
    "Malware/Hacking": ((), "cybercrime"),
    "Physical harm": (("cbrn", "weapons", "self_harm"), "violence"),
    "Economic harm": (("drugs",), "crime_nonviolent"),
    "Fraud/Deception": (("cybercrime",), "crime_nonviolent"),
    "Disinformation": ((), "misinformation"),
    "Sexual/Adult content": (("sexual_minors", "sex_crimes"), "sexual"),
    "Privacy": ((), "privacy"),
    "Expert advice": ((), "specialized_advice"),
    "Government decision-making": ((), "crime_nonviolent"),
}
"""JBB category -> (keyword-checked alternatives, fallback taxonomy category)."""


def jbb_categories(category: str, text: str) -> tuple[str, ...]:
    """Map a JailbreakBench category (with keyword alternatives) onto a taxonomy category."""
    if category not in JBB_MAP:
        raise DataError(f"unknown JailbreakBench category {category!r}")
    candidates, fallback = JBB_MAP[category]
    return choose(text, candidates, fallback)


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() == "true"


def load_jailbreakbench(folder: Path) -> Iterator[Example]:
    """Yield jailbreak prompts (input stage, deduplicated) and judged responses (output stage)."""
    seen_prompts: set[str] = set()
    for path in sorted((folder / "artifacts").glob("*/*/*.json")):
        data = read_json(path)
        rows = data.get("jailbreaks") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise DataError("expected an object with a 'jailbreaks' list", source=str(path))
        method = path.parts[-3]
        for row in rows:
            goal, prompt, response = row.get("goal"), row.get("prompt"), row.get("response")
            if not goal or not prompt:
                continue  # the attack produced no prompt for this goal
            categories = jbb_categories(str(row.get("category")), f"{row.get('behavior', '')} {goal}")
            meta = {
                "method": method,
                "model": path.stem,
                "behavior": str(row.get("behavior")),
                "category": str(row.get("category")),
            }
            if prompt not in seen_prompts:
                seen_prompts.add(prompt)
                yield prompt_example(
                    "jailbreakbench",
                    f"{method}:{path.stem}:{row.get('index')}",
                    prompt,
                    harmful=True,
                    categories=categories,
                    group=goal,
                    meta=meta,
                )
            if response:
                yield response_example(
                    "jailbreakbench",
                    f"{method}:{path.stem}:{row.get('index')}:response",
                    prompt,
                    response,
                    harmful=_truthy(row.get("jailbroken")),
                    categories=categories,
                    group=goal,
                    meta={**meta, "jailbroken": str(row.get("jailbroken"))},
                )


def load_gptfuzz(folder: Path) -> Iterator[Example]:
    """Yield output-stage examples from GPTFuzz ``train.csv`` and ``evaluate.csv`` joined with the questions."""
    questions = {row["index"]: row["text"] for row in read_csv(folder / "question_list.csv")}
    categories = {index: infer_categories(text) for index, text in questions.items()}
    for name in ("train.csv", "evaluate.csv"):
        path = folder / name
        for number, row in enumerate(read_csv(path), start=2):
            try:
                index, response, label = row["question"], row["Response"], row["label"]
                question = questions[index]
            except KeyError as exc:
                raise DataError(
                    f"missing field or unknown question {exc}", source=str(path), row=number
                ) from exc
            yield response_example(
                "gptfuzz-labeled-responses",
                f"{path.stem}:{number}",
                question,
                response,
                harmful=label == "1",
                categories=categories[index],
                meta={"question": index, "label": label},
            )
