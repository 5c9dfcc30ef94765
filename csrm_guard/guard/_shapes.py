"""Find the text in what an LLM call returns, and put a refusal back in the same shape.

Supported shapes: plain strings, OpenAI-style chat completions and completion chunks, either as dicts or as
objects (the official client's Pydantic models). A refusal is built from an output seen earlier when there is
one, else from the wrapped function's return annotation.
"""

from __future__ import annotations

import collections.abc
import copy
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any

from csrm_guard.errors import InputError

__all__ = [
    "completion_dict",
    "refusal_from_annotation",
    "text_of",
    "with_text",
    "yield_annotation",
]

_FINISH = "content_filter"  # what OpenAI itself reports when it withholds content


def text_of(output: Any) -> str:
    """Return the assistant text of ``output`` (a string, completion or chunk; dict or object).

    Raises:
        InputError: When no text can be found in ``output``.
    """
    if isinstance(output, str):
        return output
    choices = output.get("choices") if isinstance(output, Mapping) else getattr(output, "choices", None)
    if choices is None:
        raise InputError(
            f"cannot find the response text in a {type(output).__name__}: return a str or an OpenAI-style "
            "chat completion (or chunk)",
            location="output",
        )
    if not choices:
        return ""
    choice = choices[0]
    part = _get(choice, "message") or _get(choice, "delta")
    content = _get(part, "content") if part is not None else None
    return content if isinstance(content, str) else ""


def with_text(output: Any, text: str) -> Any:
    """Return a copy of ``output`` whose assistant text is ``text`` (a refusal), marked ``content_filter``."""
    if isinstance(output, str):
        return text
    if isinstance(output, Mapping):
        return _dict_with_text(output, text)
    dump = getattr(output, "model_dump", None)
    if callable(dump):  # a Pydantic model such as openai's ChatCompletion / ChatCompletionChunk
        return type(output).model_validate(_dict_with_text(dump(), text))
    raise InputError(f"cannot put a refusal into a {type(output).__name__}", location="output")


def _dict_with_text(output: Mapping[str, Any], text: str) -> dict[str, Any]:
    result = copy.deepcopy(dict(output))
    choices = result.get("choices") or [{"index": 0}]
    first = choices[0]
    key = "delta" if "delta" in first else "message"
    first[key] = {**(first.get(key) or {}), "role": "assistant", "content": text}
    first["finish_reason"] = _FINISH
    result["choices"] = [first]
    return result


def completion_dict(text: str, *, chunk: bool = False, model: str = "csrm-guard") -> dict[str, Any]:
    """Build an OpenAI-style chat completion (or chunk) dict carrying ``text``."""
    part = "delta" if chunk else "message"
    return {
        "id": f"csrm-guard-{time.time_ns():x}",
        "object": "chat.completion.chunk" if chunk else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                part: {"role": "assistant", "content": text},
                "finish_reason": _FINISH,
                "logprobs": None,
            }
        ],
    }


def refusal_from_annotation(annotation: Any, *, chunk: bool = False) -> Callable[[str], Any]:
    """Return a builder of refusals matching a return (or yield) annotation; plain text when unknown."""
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return lambda text: completion_dict(text, chunk=chunk)
    validate = getattr(annotation, "model_validate", None)
    if callable(validate) and "choices" in getattr(annotation, "model_fields", {}):
        return lambda text: validate(completion_dict(text, chunk=chunk))
    return lambda text: text


def yield_annotation(annotation: Any) -> Any:
    """The item type of an ``Iterator``/``Generator``/``AsyncIterator``/``AsyncGenerator`` annotation."""
    origin = typing.get_origin(annotation)
    if origin in _ITERATORS and typing.get_args(annotation):
        return typing.get_args(annotation)[0]
    return None


_ITERATORS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
