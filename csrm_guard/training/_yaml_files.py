"""Reading the hand-written YAML data files shipped in the package, with errors that say where the problem is."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources.abc import Traversable
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from csrm_guard.errors import DataError

__all__ = ["validated", "yaml_files"]

_Model = TypeVar("_Model", bound=BaseModel)


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
