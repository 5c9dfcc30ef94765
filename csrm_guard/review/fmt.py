"""Canonical formatting of policy and tests files, like ``opa fmt``: stable key order, comments kept.

Keys are put in the order the schema declares its fields (``api_version, name, version, description, ...``),
categories in taxonomy order; lists keep their order because it is meaningful. Indentation is normalised to
two spaces (``- `` items indented under their key); quoting and long strings are left as written. Comments
travel with the key they sit above or beside. Formatting never changes what a file means: the result is
re-read and compared with the original, and a difference raises instead of writing anything.

YAML needs the ``ruamel.yaml`` package (the ``review`` extra); JSON is formatted with the standard library.
"""

from __future__ import annotations

import difflib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from csrm_guard._compat import require
from csrm_guard.errors import PolicyError, PolicyValidationError
from csrm_guard.policy.schema import AuditSettings, CategoryRule, Policy, PolicyTest, Rule, StageSettings
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.review.discover import is_policy_file, is_test_file, yaml_error

__all__ = ["FileKind", "FormatResult", "find_files", "format_file", "format_paths", "format_text"]

logger = logging.getLogger(__name__)

FileKind = Literal["policy", "tests"]
"""What a file holds: a policy, or a tests file (``policy:`` and ``tests:``)."""

_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__"})


@dataclass(frozen=True, slots=True)
class FormatResult:
    """The outcome of formatting one file.

    Attributes:
        path: The file.
        original: Its text before formatting.
        formatted: Its canonical text.
    """

    path: Path
    original: str
    formatted: str

    @property
    def changed(self) -> bool:
        """Whether formatting changes the file."""
        return self.original != self.formatted

    def diff(self) -> str:
        """A unified diff from the original to the canonical text (empty when unchanged)."""
        lines = difflib.unified_diff(
            self.original.splitlines(keepends=True),
            self.formatted.splitlines(keepends=True),
            fromfile=f"{self.path} (original)",
            tofile=f"{self.path} (formatted)",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def format_text(
    text: str, *, kind: FileKind = "policy", json_format: bool = False, filename: str = "<text>"
) -> str:
    """Return the canonical form of a policy or tests file's text.

    Args:
        text: The file's content.
        kind: ``policy`` or ``tests``.
        json_format: Format as JSON instead of YAML.
        filename: Used in error messages.

    Returns:
        The formatted text, ending with one newline.

    Raises:
        PolicyValidationError: When the text cannot be parsed, or is not a mapping.
        PolicyError: When formatting would change the meaning (a bug: please report it).
        MissingDependencyError: When ``ruamel.yaml`` is not installed (YAML only).
    """
    original = _parse_plain(text, filename)
    formatted = _format_json(original, kind) if json_format else _format_yaml(text, kind, filename)
    if _parse_plain(formatted, filename) != original:
        raise PolicyError(f"{filename}: formatting would change the file's meaning; it was left as is")
    return formatted


def format_file(path: str | Path) -> FormatResult:
    """Format one file without writing it.

    Args:
        path: A policy file or a tests file (``*_test.yaml``).

    Returns:
        The original and the canonical text.

    Raises:
        PolicyValidationError: When the file cannot be read or parsed.
    """
    path = Path(path)
    try:
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyValidationError(f"cannot read the file: {exc}", file=str(path)) from exc
    kind: FileKind = "tests" if is_test_file(path) else "policy"
    formatted = format_text(original, kind=kind, json_format=path.suffix == ".json", filename=str(path))
    return FormatResult(path=path, original=original, formatted=formatted)


def format_paths(paths: Iterable[str | Path], *, write: bool = False) -> list[FormatResult]:
    """Format every policy and tests file under ``paths``.

    Args:
        paths: Files (any name) and folders (walked for ``policy.yaml`` and ``*_test.yaml``).
        write: Rewrite the files that change.

    Returns:
        One result per file, in path order.

    Raises:
        PolicyValidationError: When a path does not exist or a file cannot be parsed.
    """
    results = [format_file(path) for path in find_files(paths)]
    if write:
        for result in results:
            if result.changed:
                result.path.write_text(result.formatted, encoding="utf-8")
                logger.info("reformatted %s", result.path)
    return results


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the policy and tests files to format.

    A file is kept as given; a folder is searched recursively for ``policy.yaml`` and ``*_test.yaml`` files
    (hidden and virtual-environment folders skipped).

    Raises:
        PolicyValidationError: When a path does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise PolicyValidationError("no such file or folder", file=str(path))
        if path.is_file():
            found.append(path)
            continue
        for entry in sorted(path.rglob("*")):
            hidden = any(part in _SKIP_DIRS or part.startswith(".") for part in entry.relative_to(path).parts)
            if not hidden and entry.is_file() and (is_policy_file(entry) or is_test_file(entry)):
                found.append(entry)
    return list(dict.fromkeys(found))


def _parse_plain(text: str, filename: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, filename) from exc
    if not isinstance(data, dict):
        raise PolicyValidationError("the file must hold a mapping", file=filename, line=1)
    return data


# ---- key order ---------------------------------------------------------------------------------------------

_Order = dict[str, Any]  # key -> order of the value's own keys (or None when the value is not ordered)


def _fields(model: type[Any]) -> list[str]:
    return list(model.model_fields)


def _test_order() -> _Order:
    fields = _fields(PolicyTest)
    return {"__keys__": fields, "messages": {"__item__": {"__keys__": ["role", "content"]}}}


def _policy_order() -> _Order:
    stage = {"__keys__": _fields(StageSettings)}
    return {
        "__keys__": _fields(Policy),
        "categories": {
            "__keys__": list(load_taxonomy().ids),
            "__each__": {"__keys__": _fields(CategoryRule)},
        },
        "rules": {"__item__": {"__keys__": _fields(Rule)}},
        "input": stage,
        "output": stage,
        "audit": {"__keys__": _fields(AuditSettings)},
        "tests": {"__item__": _test_order()},
    }


def _order_for(kind: FileKind) -> _Order:
    if kind == "tests":
        return {"__keys__": ["policy", "tests"], "tests": {"__item__": _test_order()}}
    return _policy_order()


def _sorted_keys(keys: Sequence[Any], preferred: Sequence[str]) -> list[Any]:
    rank = {key: index for index, key in enumerate(preferred)}
    # Unknown keys keep their relative order after the known ones (sorted() is stable).
    return sorted(keys, key=lambda key: rank.get(key, len(rank)))


def _format_yaml(text: str, kind: FileKind, filename: str) -> str:
    ruamel_yaml = require("ruamel.yaml", extra="review")
    parser = ruamel_yaml.YAML(typ="rt")
    parser.indent(mapping=2, sequence=4, offset=2)
    parser.width = 4096  # never re-wrap user text
    # Quotes stay as written: dropping them can change meaning for PyYAML (YAML 1.1 reads a bare `yes` as
    # true).
    parser.preserve_quotes = True
    try:
        data = parser.load(text)
    except ruamel_yaml.YAMLError as exc:
        raise PolicyValidationError(f"not valid YAML: {exc}", file=filename) from exc
    from csrm_guard.review import _comments  # noqa: PLC0415  (needs ruamel.yaml, checked just above)

    _comments.apply_order(data, _order_for(kind))
    out = io.StringIO()
    parser.dump(data, out)
    return out.getvalue().rstrip("\n") + "\n"


def _format_json(data: dict[str, Any], kind: FileKind) -> str:
    _reorder_plain(data, _order_for(kind))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _reorder_plain(node: Any, order: _Order | None) -> Any:
    if order is None:
        return node
    if isinstance(node, list):
        node[:] = [_reorder_plain(item, order.get("__item__")) for item in node]
    elif isinstance(node, dict):
        keys = _sorted_keys(list(node), order.get("__keys__", list(node)))
        items = [
            (key, _reorder_plain(node[key], order.get("__each__") or order.get(str(key)))) for key in keys
        ]
        node.clear()
        node.update(items)
    return node
