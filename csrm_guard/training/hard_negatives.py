"""Hand-written hard negatives: harmless conversations that sound like a harm category.

A guard trained only on public safety sets learns shortcuts: a user turn about passwords reads as cybercrime, a
birthday party for a daughter as sexual content. Each file in ``csrm_guard/training/benign/`` holds *items* that
break those shortcuts::

    version: "1"
    items:
      a_two_step_email:
        topics: [privacy, cybercrime]   # 1-3 categories a hasty guard would wrongly see
        low: []                         # categories where the content sits at 'low' severity
        prompt: "How do I turn on two-step verification for my email account?"
        response: "In your account settings, open Security, ..."

Every item gives two :class:`~csrm_guard.training.data.Example` objects of source :data:`SOURCE`: the prompt judged
at the input stage and the response judged at the output stage. Both share one conversation id, so an item lands in
one split. Severity is known in every category: ``low`` (rank 1) for the listed ones, none elsewhere, so a category
clause that allows none of a ``low`` category is violated and one that allows ``low`` is not. ``harmful`` is false
for every item, as the public sets label neutral history or education: a generic "nothing harmful" rule is not broken
by them. ``topics`` feed the augmentation's "the conversation's topic is disallowed, the turn is safe" rows.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from csrm_guard._types import Stage
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training._yaml_files import Turn, both_stages, known_categories, load_prompt_items, validated
from csrm_guard.training.data import Example, conversation_id

__all__ = ["SOURCE", "HardNegative", "hard_negative_examples", "load_hard_negatives"]

SOURCE = "hard-negatives"
"""The ``source`` of every hand-written hard-negative example."""

_LOW = Severity.LOW.rank


class HardNegative(BaseModel):
    """One item as written in a hard-negative file (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topics: list[str] = Field(min_length=1, max_length=3)
    low: list[str] = Field(default_factory=list)
    prompt: Turn
    response: Turn

    @field_validator("topics", "low")
    @classmethod
    def _known(cls, categories: list[str]) -> list[str]:
        known_categories(categories)
        if len(set(categories)) != len(categories):
            raise ValueError("a category is listed twice")
        return categories

    @model_validator(mode="after")
    def _low_allowed(self) -> HardNegative:
        taxonomy = load_taxonomy()
        capped = [c for c in self.low if taxonomy.get(c).ceiling.rank < _LOW]
        if capped:
            # A category no policy may relax cannot hold "harmless at low severity" content.
            raise ValueError(f"low lists {capped}, whose ceiling is none")
        return self


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["1"]
    items: dict[str, HardNegative] = Field(min_length=1)


def _default_folder() -> Traversable:
    return resources.files("csrm_guard.training").joinpath("benign")


def load_hard_negatives(folder: Path | Traversable | None = None) -> dict[str, HardNegative]:
    """Load and validate every ``*.yaml`` file in ``folder``.

    Args:
        folder: The folder to read (default: the ``benign`` folder shipped in the package).

    Returns:
        The items by id, in id order.

    Raises:
        DataError: When a file is not valid YAML or breaks the format (the message names the file, the item and the
            field), or when an item id or a prompt appears twice.
    """
    root = folder if folder is not None else _default_folder()
    return load_prompt_items(
        root, lambda entry: validated(entry, _File, "items", "item").items, "hard-negative"
    )


def hard_negative_examples(folder: Path | Traversable | None = None) -> list[Example]:
    """The input- and output-stage examples of every item (see the module docstring), sorted by id."""
    return both_stages(load_hard_negatives(folder), _example)


def _example(item_id: str, item: HardNegative, stage: Stage, messages: tuple[dict[str, str], ...]) -> Example:
    return Example(
        id=f"{SOURCE}:{item_id}:{stage}",
        conversation_id=conversation_id(item.prompt),
        source=SOURCE,
        messages=messages,
        stage=stage,
        harmful=False,
        categories=tuple(item.low),
        topics=tuple(c for c in item.topics if c not in item.low),
        severity={c: _LOW if c in item.low else 0 for c in load_taxonomy().ids},
        refusal=False if stage == "output" else None,
        meta={"item": item_id},
    )
