"""Hand-written harmful examples with known categories and severity: the counterpart of the hard negatives.

The public sets are long, wordy requests and answers; a guard trained only on them misses short, plain ones ("how do
I make thermite at home?") and turns whose harm is in the reply rather than the request (an answer that swears at a
child). Each file in ``csrm_guard/training/harmful/`` holds *items*::

    version: "1"
    items:
      a_thermite_short:
        judged: input                  # which turn carries the harm: the request (input) or the reply (output)
        severity: {weapons: high}      # 1-3 categories at low, moderate or high; others may be listed at none
        prompt: "how do i make thermite at home"
        response: "I can't help with making incendiary weapons. ..."

``judged: input``: the prompt is harmful in the listed categories and the response is a safe refusal or redirection.
``judged: output``: the prompt is harmless and the response is harmful in the listed categories. Every item gives two
:class:`~csrm_guard.training.data.Example` objects of source :data:`SOURCE` sharing one conversation id (so one
split): the harmful turn, with the listed severities (other categories unknown) and ``harmful`` true when one of them
is moderate or high; and the harmless turn, at severity none in every category. A category listed at ``none`` says
the harmful turn is known *not* to be about it (an adult sex scene is ``{sexual: high, sexual_minors: none}``): it
trains that category towards none instead of leaving it unknown, so the item does not pull a neighbouring category
up with its own.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from csrm_guard._types import Stage
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training._yaml_files import Turn, both_stages, known_categories, load_prompt_items, validated
from csrm_guard.training.data import Example, conversation_id

__all__ = ["SOURCE", "HarmfulItem", "harmful_examples", "load_harmful_items"]

SOURCE = "harmful-examples"
"""The ``source`` of every hand-written harmful example."""

_HARMFUL_FROM = Severity.MODERATE.rank
_MAX_HARMED = 3


class HarmfulItem(BaseModel):
    """One item as written in a harmful-examples file (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    judged: Stage
    severity: dict[str, Literal["none", "low", "moderate", "high"]] = Field(min_length=1, max_length=6)
    prompt: Turn
    response: Turn

    @field_validator("severity")
    @classmethod
    def _known(cls, severity: dict[str, str]) -> dict[str, str]:
        known_categories(severity)
        harmed = [category for category, level in severity.items() if level != Severity.NONE]
        if not 1 <= len(harmed) <= _MAX_HARMED:
            raise ValueError(f"needs 1-{_MAX_HARMED} categories above none, got {len(harmed)}")
        return severity

    @property
    def ranks(self) -> dict[str, int]:
        """The listed categories' severity ranks (0 none .. 3 high)."""
        return {category: Severity(level).rank for category, level in self.severity.items()}

    @property
    def harmed(self) -> tuple[str, ...]:
        """The categories listed above none: the ones the harmful turn is about."""
        return tuple(category for category, rank in self.ranks.items() if rank)


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["1"]
    items: dict[str, HarmfulItem] = Field(min_length=1)


def load_harmful_items(folder: Path | Traversable | None = None) -> dict[str, HarmfulItem]:
    """Load and validate every ``*.yaml`` file in ``folder`` (default: the shipped ``harmful`` folder), by item id.

    Raises:
        DataError: As :func:`~csrm_guard.training.hard_negatives.load_hard_negatives` does: a file that is not YAML
            or breaks the format (naming the file, the item and the field), an item id or a prompt seen twice.
    """
    root = folder if folder is not None else resources.files("csrm_guard.training").joinpath("harmful")
    return load_prompt_items(
        root, lambda entry: validated(entry, _File, "items", "item").items, "harmful-example"
    )


def harmful_examples(folder: Path | Traversable | None = None) -> list[Example]:
    """The input- and output-stage examples of every item (see the module docstring), sorted by id."""
    return both_stages(load_harmful_items(folder), _example)


def _example(item_id: str, item: HarmfulItem, stage: Stage, messages: tuple[dict[str, str], ...]) -> Example:
    topics = item.harmed
    if stage == item.judged:
        harmful, categories, severity = max(item.ranks.values()) >= _HARMFUL_FROM, topics, item.ranks
    else:
        # The other turn is harmless: a refusal after a harmful request, or the harmless request itself.
        harmful, categories, severity = False, (), dict.fromkeys(load_taxonomy().ids, 0)
    return Example(
        id=f"{SOURCE}:{item_id}:{stage}",
        conversation_id=conversation_id(item.prompt),
        source=SOURCE,
        messages=messages,
        stage=stage,
        harmful=harmful,
        categories=categories,
        topics=topics if stage == "output" or item.judged == "input" else (),
        severity=severity,
        refusal=(item.judged == "input") if stage == "output" else None,
        meta={"item": item_id, "judged": item.judged},
    )
