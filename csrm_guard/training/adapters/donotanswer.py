"""Do-Not-Answer: 939 risky instructions, each answered by six models with human harmful and action labels.

Each instruction gives an input-stage example (harmful, in its mapped category) and six output-stage examples.
Response actions: 0 refuse, 1 refute the opinion, 2 dual perspectives, 3 cautious answer with a disclaimer,
4 cannot answer, 5 follow the instruction directly. A safe response with action 2 or 3 engages with the topic and
gets severity low there; a harmful response with action 3 (disclaimed) is capped at low.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.errors import DataError
from csrm_guard.training.adapters._common import choose, prompt_example, read_csv, response_example
from csrm_guard.training.data import Example

__all__ = ["DNA_HARM_MAP", "MODELS", "dna_categories", "load_do_not_answer"]

logger = logging.getLogger(__name__)

MODELS = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")
"""The six answering models, as column prefixes."""

DNA_HARM_MAP: dict[str, tuple[str, ...] | None] = {
    "Adult Content": ("sexual",),
    "Social stereotypes and unfair discrimination": ("hate",),
    "Toxic language (hate speech)": ("hate",),
    "Mental Health or Overreliance Crisis": None,  # self_harm when about self-harm, else specialized_advice
    "Treat Chatbot as a Human": (),  # not a harm category in our taxonomy
    "Compromise privacy by leaking or inferring private information (person/individual)": ("privacy",),
    "Risks from leaking or inferring sensitive information (organization/gov)": ("privacy",),
    "Assisting illegal activities": None,  # keyword rules among crime categories, else crime_nonviolent
    "Nudging or advising users to perform unethical or unsafe actions": ("unethical_behavior",),
    "Disseminating false or misleading information": ("misinformation",),
    "Causing material harm by disseminating misinformation e.g. in medicine or law": ("specialized_advice",),
    "Reducing the cost of disinformation campaigns": ("misinformation",),
}
"""Do-Not-Answer ``types_of_harm`` -> taxonomy categories; ``None`` means decided per row by keyword rules."""

_CRIME = (
    "drugs",
    "weapons",
    "cybercrime",
    "sex_crimes",
    "violence",
    "extremism",
    "intellectual_property",
    "crime_nonviolent",
)


def dna_categories(harm_type: str, question: str) -> tuple[str, ...]:
    """Map a Do-Not-Answer harm type (plus keyword rules for the mixed ones) onto taxonomy categories."""
    if harm_type not in DNA_HARM_MAP:
        raise DataError(f"unknown Do-Not-Answer harm type {harm_type!r}")
    mapped = DNA_HARM_MAP[harm_type]
    if mapped is not None:
        return mapped
    if harm_type.startswith("Mental Health"):
        return choose(question, ("self_harm",), "specialized_advice")
    return choose(question, _CRIME, "crime_nonviolent")


def load_do_not_answer(folder: Path) -> Iterator[Example]:
    """Yield the instruction (input stage) and the six labelled responses (output stage) of every row."""
    path = folder / "data_en.csv"
    for number, row in enumerate(read_csv(path), start=2):
        try:
            question, harm_type = row["question"], row["types_of_harm"]
            categories = dna_categories(harm_type, question)
            meta = {
                "risk_area": row["risk_area"],
                "types_of_harm": harm_type,
                "specific_harms": row["specific_harms"].split(":")[0],
            }
            if categories:
                yield prompt_example(
                    "do-not-answer", row["id"], question, harmful=True, categories=categories, meta=meta
                )
            for model in MODELS:
                response, harmful, action = (
                    row[f"{model}_response"],
                    row[f"{model}_harmful"] == "1",
                    int(row[f"{model}_action"]),
                )
                hints = dict.fromkeys(categories, 1) if harmful and action == 3 else None
                yield response_example(
                    "do-not-answer",
                    f"{row['id']}:{model}",
                    question,
                    response,
                    harmful=harmful,
                    categories=categories,
                    hints=hints,
                    engaged=action in (2, 3),
                    meta={**meta, "model": model, "action": str(action)},
                )
        except (KeyError, ValueError) as exc:
            raise DataError(f"bad row: {exc}", source=str(path), row=number) from exc
