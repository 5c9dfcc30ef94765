"""Load policies from YAML and JSON files and policy folders, resolving ``extends`` chains.

Every problem raises :class:`~csrm_guard.errors.PolicyValidationError` naming the file, line, column and field
path, with a suggestion for a misspelt key, category or value; no pyyaml or Pydantic exception escapes.

``extends`` rules (documented in ``docs/policies.md``):

* parents are paths relative to the extending file (a file or a policy folder); several parents merge in
  order, later ones winning; the child is merged last;
* mappings merge key by key, recursively (``categories``, ``input``, ``output``, ``audit``, each category);
* ``rules`` merge by ``id``: a child rule with a parent's id merges into it field by field, new ids are
  appended;
* scalars and lists replace; a ``null`` in the child removes the inherited value, so the default applies;
* ``name``, ``tests`` and ``extends`` are never inherited.
"""

from __future__ import annotations

import codecs
import logging
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from csrm_guard.errors import PolicyValidationError
from csrm_guard.policy._problems import Loc, format_path, problems_from
from csrm_guard.policy._yaml import Node, Where, parse_json, parse_yaml
from csrm_guard.policy.schema import Policy

__all__ = [
    "MAX_EXTENDS_DEPTH",
    "MAX_FILE_BYTES",
    "POLICY_FILENAMES",
    "find_policy_files",
    "load_policy",
    "load_policy_text",
]

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Largest policy file accepted (2 MiB)."""
MAX_EXTENDS_DEPTH = 16
"""Longest ``extends`` chain accepted."""
POLICY_FILENAMES = ("policy.yaml", "policy.yml", "policy.json")
"""File names looked for inside a policy folder, in this order."""

_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_NOT_INHERITED = ("name", "tests", "extends")
Format = Literal["yaml", "json"]
_Marks = dict[Loc, tuple[Where, Where | None]]


def load_policy(path: str | Path) -> Policy:
    """Load a policy from a file or a policy folder, resolving ``extends``.

    Args:
        path: A ``.yaml``, ``.yml`` or ``.json`` file, or a folder holding ``policy.yaml``.

    Returns:
        The validated policy; equal, with the same hash, to the same policy built in Python.

    Raises:
        PolicyValidationError: When a file cannot be read or the policy is invalid; ``.problems`` lists every
            problem found, each with its file, line, column and field.

    .. versionadded:: 0.1
    """
    file = _policy_file(Path(path), Where(str(path)))
    tree = _resolve(file, (), None)
    return _validate(tree)


def load_policy_text(
    text: str | bytes,
    *,
    source: str = "<string>",
    format: Format = "yaml",
    base_dir: str | Path | None = None,
) -> Policy:
    """Load a policy from text already in memory.

    Args:
        text: The policy document (``bytes`` must be UTF-8).
        source: The name used in error locations.
        format: ``yaml`` or ``json``.
        base_dir: Folder that relative ``extends`` paths start from (default: the working directory).

    Returns:
        The validated policy.

    Raises:
        PolicyValidationError: When the text is invalid.
    """
    if isinstance(text, bytes):
        text = _decode(text, source)
    elif len(text) > MAX_FILE_BYTES:
        raise Where(source).error(f"the policy is larger than {MAX_FILE_BYTES} bytes")
    tree = _parse(text, source, format)
    base = Path(base_dir) if base_dir is not None else Path()
    return _validate(_with_parents(tree, base, ()))


def find_policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the policy files they name.

    A file is kept as given; a folder is searched recursively for ``policy.yaml``, ``policy.yml`` and
    ``policy.json`` (hidden folders skipped).

    Args:
        paths: Files and folders.

    Returns:
        Policy files in a stable order, without duplicates.

    Raises:
        FileNotFoundError: When a path does not exist.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            matches = (p for name in POLICY_FILENAMES for p in path.rglob(name))
            visible = (
                p for p in matches if not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            found.update(dict.fromkeys(sorted(visible)))
        elif path.exists():
            found[path] = None
        else:
            raise FileNotFoundError(str(path))
    return list(found)


def _policy_file(path: Path, where: Where) -> Path:
    if path.is_dir():
        for name in POLICY_FILENAMES:
            if (path / name).is_file():
                return path / name
        raise where.error(f"folder {str(path)!r} holds no {' / '.join(POLICY_FILENAMES)}")
    return path


def _read(path: Path, where: Where) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise where.error(f"{_this(path, where)} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise where.error(f"{_this(path, where)} is larger than {MAX_FILE_BYTES} bytes")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise where.error(f"cannot read {_this(path, where)}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise where.error(f"{_this(path, where)} is larger than {MAX_FILE_BYTES} bytes")
    return _decode(data, str(path))


def _this(path: Path, where: Where) -> str:
    """Name ``path`` in a message, unless the location prefix already does."""
    return "the file" if where.file == str(path) else repr(str(path))


def _decode(data: bytes, file: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise Where(file, line, column).error(f"the file is not valid UTF-8 (byte 0x{bad})") from exc


def _parse(text: str, file: str, format: Format) -> Node:
    tree = parse_json(text, file) if format == "json" else parse_yaml(text, file)
    if not tree.is_mapping:
        kind = "a list" if isinstance(tree.value, list) else f"the value {tree.text!r}"
        raise tree.where.error(f"a policy must be a mapping of keys such as 'name', got {kind}")
    return tree


def _resolve(path: Path, chain: tuple[Path, ...], where: Where | None) -> Node:
    """Read ``path`` and merge its parents under it."""
    here = where or Where(str(path))
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise here.error(
            f"{_this(path, here)}: unsupported file type {suffix or '(none)'!r}; use .yaml, .yml or .json"
        )
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(real) :], real))
        raise here.error(f"'extends' forms a cycle: {cycle}", field="extends")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise here.error(f"'extends' chain is longer than {MAX_EXTENDS_DEPTH} files", field="extends")
    tree = _parse(_read(path, here), str(path), "json" if suffix == ".json" else "yaml")
    return _with_parents(tree, path.parent, (*chain, real))


def _with_parents(tree: Node, base: Path, chain: tuple[Path, ...]) -> Node:
    merged: Node | None = None
    for ref, where in _extends_entries(tree):
        parent_path = _policy_file(base / ref, where)
        parent = _resolve(parent_path, chain, where)
        merged = parent if merged is None else _merge(merged, parent, ())
    if merged is None:
        return tree
    for key in _NOT_INHERITED:
        merged.value.pop(key, None)
    logger.debug("merged %d parent policies under %s", len(_extends_entries(tree)), tree.where.file)
    return _merge(merged, tree, ())


def _extends_entries(tree: Node) -> list[tuple[str, Where]]:
    node = tree.value.get("extends")
    if node is None or node.value is None:
        return []
    items = node.value if isinstance(node.value, list) else [node]
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item.value, str) or not item.value.strip():
            field = "extends" if item is node else f"extends[{index}]"
            raise item.where.error(
                "'extends' takes a path or a list of paths to parent policies", field=field
            )
        entries.append((item.value, item.where))
    return entries


def _merge(base: Node, over: Node, path: Loc) -> Node:
    """Merge ``over`` onto ``base`` (neither is modified)."""
    if base.is_mapping and over.is_mapping:
        result = Node(dict(base.value), over.where, dict(base.keys))
        for key, node in over.value.items():
            if node.value is None:  # an explicit null removes the inherited value
                result.value.pop(key, None)
                continue
            inherited = result.value.get(key)
            result.value[key] = node if inherited is None else _merge(inherited, node, (*path, key))
            result.keys[key] = over.keys[key]
        return result
    if path == ("rules",) and isinstance(base.value, list) and isinstance(over.value, list):
        return _merge_rules(base, over)
    return over


def _rule_id(node: Node) -> Any:
    item = node.value.get("id") if node.is_mapping else None
    return item.value if item is not None else None


def _merge_rules(base: Node, over: Node) -> Node:
    rules = list(base.value)
    positions = {_rule_id(rule): index for index, rule in enumerate(rules) if isinstance(_rule_id(rule), str)}
    for rule in over.value:
        rule_id = _rule_id(rule)
        if isinstance(rule_id, str) and rule_id in positions:
            rules[positions[rule_id]] = _merge(rules[positions[rule_id]], rule, ("rules", rule_id))
        else:
            rules.append(rule)
    return Node(rules, over.where)


def _plain(node: Node, loc: Loc, marks: _Marks, key_where: Where | None) -> Any:
    """Convert a located tree into plain data, recording where each path came from."""
    marks[loc] = (node.where, key_where)
    if node.is_mapping:
        return {key: _plain(item, (*loc, key), marks, node.keys.get(key)) for key, item in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(item, (*loc, index), marks, None) for index, item in enumerate(node.value)]
    return node.value


def _validate(tree: Node) -> Policy:
    marks: _Marks = {}
    data = _plain(tree, (), marks, None)
    try:
        return Policy.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        found = [
            _locate(problem.loc, problem.on_key, problem.message, marks)
            for problem in problems_from(exc, Policy)
        ]
        first = found[0]
        raise PolicyValidationError(
            first.problem,
            file=first.file,
            line=first.line,
            column=first.column,
            field=first.field,
            related=tuple(found[1:]),
        ) from exc


def _locate(loc: Loc, on_key: bool, message: str, marks: _Marks) -> PolicyValidationError:
    field = format_path(loc) or None
    key_where = marks[loc][1] if loc in marks else None
    if on_key and key_where is not None:
        return key_where.error(message, field)
    for size in range(len(loc), -1, -1):
        if loc[:size] in marks:
            return marks[loc[:size]][0].error(message, field)
    return marks[()][0].error(message, field)
