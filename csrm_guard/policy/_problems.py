"""Turn Pydantic validation errors into readable problems with a field path and a suggestion.

Shared by the schema (policies built in Python) and the loader (policies read from files, which adds file,
line and column). Nothing here knows about files.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["Loc", "LocatedValueError", "Problem", "format_path", "problems_from", "suggest"]

Loc = tuple[str | int, ...]
"""A path into policy data: mapping keys and list indexes."""

_MAX_SHOWN = 60


class LocatedValueError(ValueError):
    """A validator error about a field below the one being validated (``loc`` is relative to it)."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem.

    Attributes:
        loc: Where in the data the problem is.
        message: What is wrong, with a suggestion when one fits.
        on_key: True when the problem is the mapping key itself (unknown key, unknown category).
    """

    loc: Loc
    message: str
    on_key: bool = False


def suggest(word: str, choices: Sequence[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = [choice for choice in choices if choice.lower() == word.lower()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_path(loc: Loc) -> str:
    """Render a path as ``categories.violence.max_severity`` or ``rules[2].text``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Convert every error of ``exc`` (raised while validating ``root``) into a :class:`Problem`."""
    return [_problem(error, root) for error in exc.errors(include_url=False)]


def _problem(error: Any, root: type[BaseModel]) -> Problem:  # noqa: PLR0911 - one return per error kind
    loc: Loc = tuple(error["loc"])
    on_key = bool(loc) and loc[-1] == "[key]"
    if on_key:
        loc = loc[:-1]
    kind, value = error["type"], error.get("input")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedValueError):
        return Problem(loc + cause.loc, str(cause), on_key=False)
    if isinstance(cause, ValueError):
        return Problem(loc, str(cause), on_key=on_key)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _fields_at(root, loc[:-1])
        hint = suggest(key, known) or (f" (known keys: {', '.join(known)})" if known else "")
        return Problem(loc, f"unknown key {key!r}{hint}", on_key=True)
    if kind == "missing":
        return Problem(loc, f"required key {loc[-1]!r} is missing")
    message = str(error["msg"])
    if kind in {"enum", "literal_error"} and isinstance(value, str):
        choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        return Problem(loc, f"{message}, got {value!r}{suggest(value, choices)}")
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return Problem(loc, f"{message}, got the number {value!r} (quote it to make it text)")
    return Problem(loc, f"{message}, got {_show(value)}" if "input" in error else message)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _fields_at(root: type[BaseModel], loc: Loc) -> tuple[str, ...]:
    """Field names of the model found at ``loc`` below ``root``, or ``()`` when it is not a model."""
    annotation: Any = root
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return ()
            annotation = field.annotation
        elif get_origin(annotation) in {tuple, list}:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return ()
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return tuple(annotation.model_fields)
    return ()


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in {Union, types.UnionType}:
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
