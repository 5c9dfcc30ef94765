"""Reading the hand-written YAML data files shipped in the package, with errors that say where the problem is."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.resources.abc import Traversable
from typing import Annotated, Protocol, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError

from csrm_guard._types import Stage
from csrm_guard.errors import DataError
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.data import Example, conversation_id

__all__ = ["Turn", "both_stages", "known_categories", "load_prompt_items", "validated", "yaml_files"]

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is blank")
    return text.strip()


Turn = Annotated[str, AfterValidator(_not_blank)]
"""A prompt or response in a hand-written file: not blank, stored without surrounding whitespace."""


def known_categories(categories: Iterable[str]) -> None:
    """Raise ``ValueError`` (a pydantic validation message) naming the categories that are not taxonomy ids."""
    unknown = sorted(set(categories) - set(load_taxonomy().ids))
    if unknown:
        raise ValueError(f"unknown taxonomy categories {unknown}")


class _Prompted(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def response(self) -> str: ...


_Item = TypeVar("_Item", bound=_Prompted)


def validated(entry: Traversable, model: type[_Model], collection: str, noun: str) -> _Model:
    """Read the YAML file ``entry`` and validate it as ``model``.

    Args:
        entry: The file.
        model: The pydantic model of the whole file.
        collection: The file's key holding the entries (``families``, ``items``).
        noun: What one entry is called in messages (``family``, ``item``).

    Raises:
        DataError: When the file is not valid YAML, or breaks the model; the message names the file and, for each
            of the first five problems, the entry and the field.
    """
    try:
        return model.model_validate(yaml.safe_load(entry.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise DataError(f"invalid YAML: {exc}", source=entry.name) from exc
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            loc = [str(p) for p in error["loc"]]
            where = (
                f"{noun} {loc[1]!r}, field {'.'.join(loc[2:]) or f'({noun})'}"
                if loc[:1] == [collection] and len(loc) > 1
                else f"field {'.'.join(loc) or '(file)'}"
            )
            problems.append(f"{where}: {error['msg']}")
        raise DataError("; ".join(problems), source=entry.name) from exc


def yaml_files(folder: Traversable) -> Iterator[Traversable]:
    """The ``*.yaml`` files of ``folder`` in name order (the order their entries are read and reported in)."""
    yield from sorted((e for e in folder.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)


def load_prompt_items(
    root: Traversable, parse: Callable[[Traversable], Mapping[str, _Item]], what: str
) -> dict[str, _Item]:
    """Load the items of every ``*.yaml`` file in ``root``, each one a user prompt and what goes with it.

    Args:
        root: The folder.
        parse: Validates one file and returns its items by id.
        what: What the items are, for the warning when there are none (``hard-negative``).

    Returns:
        The items by id, in id order.

    Raises:
        DataError: From ``parse``, or when an item id is defined twice or two items share a prompt (up to case and
            spacing, so they would share a conversation id); the message names the file and both items.
    """
    items: dict[str, _Item] = {}
    files: dict[str, str] = {}
    prompts: dict[str, str] = {}
    for entry in yaml_files(root):
        for item_id, item in parse(entry).items():
            if item_id in items:
                raise DataError(f"item {item_id!r} is also defined in {files[item_id]}", source=entry.name)
            conv = conversation_id(item.prompt)
            if conv in prompts:
                raise DataError(
                    f"item {item_id!r} repeats the prompt of item {prompts[conv]!r}", source=entry.name
                )
            prompts[conv] = item_id
            items[item_id], files[item_id] = item, entry.name
    if not items:
        logger.warning("no %s items found in %s", what, root)
    return dict(sorted(items.items()))


def both_stages(
    items: Mapping[str, _Item], example: Callable[[str, _Item, Stage, tuple[dict[str, str], ...]], Example]
) -> list[Example]:
    """Each item's input-stage example (its prompt) and output-stage example (prompt and response), sorted by id.

    Args:
        items: Items by id, each with a ``prompt`` and a ``response``.
        example: Builds one example from the item id, the item, the stage and the messages.
    """
    examples = []
    for item_id, item in items.items():
        user = {"role": "user", "content": item.prompt}
        examples.append(example(item_id, item, "input", (user,)))
        examples.append(
            example(item_id, item, "output", (user, {"role": "assistant", "content": item.response}))
        )
    return sorted(examples, key=lambda e: e.id)
