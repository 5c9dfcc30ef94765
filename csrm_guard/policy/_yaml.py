"""A safe, located YAML and JSON reader for policy files.

``yaml.safe_load`` is not enough for policy files: it loses line numbers, accepts duplicate keys, recurses on
deep nesting and expands alias bombs. This module builds values straight from the parser's event stream,
without recursion, and keeps where every value and key came from. It allows only plain values (strings,
numbers, booleans, null, lists and mappings), rejects every other tag, rejects duplicate keys, caps nesting
depth and the number of values after alias expansion, and supports ``<<`` merge keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from csrm_guard.errors import PolicyValidationError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "Node", "Where", "parse_json", "parse_yaml"]

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings a policy file may use."""
MAX_VALUES = 200_000
"""Most values a file may hold once aliases are expanded (stops "billion laughs" alias bombs)."""

_CoreLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_T = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset(_T + name for name in ("str", "int", "float", "bool", "null"))
_AS_TEXT_TAGS = frozenset({_T + "timestamp", _T + "value"})  # kept as written: YAML 1.2 has no such types
_MERGE_TAG = _T + "merge"


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a file (1-based line and column; ``None`` when unknown)."""

    file: str
    line: int | None = None
    column: int | None = None

    def error(self, problem: str, field: str | None = None) -> PolicyValidationError:
        """Build a :class:`PolicyValidationError` at this position."""
        return PolicyValidationError(problem, file=self.file, line=self.line, column=self.column, field=field)


@dataclass(slots=True)
class Node:
    """A value with its position: ``value`` is a scalar, ``list[Node]`` or ``dict[str, Node]``.

    Attributes:
        value: The value; collections hold further nodes.
        where: Where the value starts.
        keys: For mappings, where each key starts.
        text: For scalars, the text as written (used for mapping keys).
    """

    value: Any
    where: Where
    keys: dict[str, Where] = field(default_factory=dict)
    text: str | None = None

    @property
    def is_mapping(self) -> bool:
        """True when the value is a mapping."""
        return isinstance(self.value, dict)


@dataclass(slots=True)
class _Frame:
    node: Node
    size: int = 1
    anchor: str | None = None
    key: Node | None = None
    merges: list[Node] = field(default_factory=list)
    awaiting_merge: bool = False


class _Builder:
    """Consumes parser events and builds :class:`Node` trees with an explicit stack."""

    def __init__(self, loader: yaml.SafeLoader, file: str, *, construct: bool = True) -> None:
        self.loader: Any = loader  # pyyaml's parser methods are untyped
        self.file = file
        self.construct = construct
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Node, int]] = {}
        self.total = 0
        self.root: Node | None = None
        self.documents = 0

    def where(self, mark: Any) -> Where:
        return Where(self.file, mark.line + 1, mark.column + 1) if mark is not None else Where(self.file)

    def build(self) -> Node:
        while self.loader.check_event():
            self.handle(self.loader.get_event())
        if self.root is None:
            raise Where(self.file, 1, 1).error(
                "the file is empty; a policy is a mapping of keys such as 'name'"
            )
        return self.root

    def handle(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.where(event.start_mark).error(
                    "a policy file holds one YAML document, found another"
                )
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)
        elif isinstance(event, yaml.ScalarEvent):
            self.attach(self.scalar(event), 1, event.anchor)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self.open(event)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            self.close()

    def alias(self, event: yaml.AliasEvent) -> None:
        if event.anchor not in self.anchors:
            raise self.where(event.start_mark).error(
                f"alias *{event.anchor} refers to no complete anchor (undefined, or used inside itself)"
            )
        node, size = self.anchors[event.anchor]
        self.attach(node, size, None)

    def scalar(self, event: yaml.ScalarEvent) -> Node:
        where = self.where(event.start_mark)
        tag = event.tag
        if tag in (None, "!"):
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        elif tag not in _PLAIN_TAGS:
            raise where.error(
                f"YAML tag {_short(event.tag)!r} is not allowed; policy files hold plain values only"
            )
        if tag in _AS_TEXT_TAGS or tag == _MERGE_TAG or not self.construct:
            value: Any = event.value
        else:
            node = yaml.ScalarNode(tag, event.value, style=event.style)
            try:
                value = yaml.SafeLoader.yaml_constructors[tag](self.loader, node)
            except (ValueError, yaml.YAMLError) as exc:
                raise where.error(f"cannot read the value {event.value[:40]!r}: {exc}") from exc
        result = Node(value, where, text=event.value)
        if tag == _MERGE_TAG:
            result.keys["<<"] = where  # marks a merge key
        return result

    def open(self, event: yaml.SequenceStartEvent | yaml.MappingStartEvent) -> None:
        mapping = isinstance(event, yaml.MappingStartEvent)
        where = self.where(event.start_mark)
        expected = _T + ("map" if mapping else "seq")
        if event.tag not in (None, "!", expected):
            raise where.error(
                f"YAML tag {_short(event.tag)!r} is not allowed; policy files hold plain values only"
            )
        if len(self.stack) >= MAX_DEPTH:
            raise where.error(f"nesting is deeper than {MAX_DEPTH} levels")
        self.stack.append(_Frame(Node({} if mapping else [], where), anchor=event.anchor))

    def close(self) -> None:
        frame = self.stack.pop()
        node = frame.node
        for source in frame.merges:  # explicit keys win; earlier merged maps win over later ones
            for key, value in source.value.items():
                if key not in node.value:
                    node.value[key] = value
                    node.keys[key] = source.keys[key]
        self.attach(node, frame.size, frame.anchor, counted=True)

    def attach(self, node: Node, size: int, anchor: str | None, *, counted: bool = False) -> None:
        self.total += 1 if counted else size
        if self.total > MAX_VALUES:
            raise node.where.error(f"the file holds more than {MAX_VALUES} values (alias expansion included)")
        if anchor is not None:
            self.anchors[anchor] = (node, size)
        if not self.stack:
            self.root = node
            return
        parent = self.stack[-1]
        parent.size += size
        if isinstance(parent.node.value, list):
            parent.node.value.append(node)
        elif parent.key is None and not parent.awaiting_merge:
            self.take_key(parent, node)
        else:
            self.take_value(parent, node)

    def take_key(self, parent: _Frame, node: Node) -> None:
        if node.text is None:
            raise node.where.error("a mapping key must be a plain value, not a list or mapping")
        if "<<" in node.keys:
            parent.awaiting_merge = True
            return
        if node.text in parent.node.value:
            first = parent.node.keys[node.text]
            raise node.where.error(f"duplicate key {node.text!r} (first used on line {first.line})")
        parent.key = node

    def take_value(self, parent: _Frame, node: Node) -> None:
        if parent.awaiting_merge:
            parent.awaiting_merge = False
            sources = node.value if isinstance(node.value, list) else [node]
            if not all(source.is_mapping for source in sources):
                raise node.where.error("a '<<' merge key needs a mapping or a list of mappings")
            parent.merges.extend(sources)
            return
        assert parent.key is not None
        assert parent.key.text is not None
        parent.node.value[parent.key.text] = node
        parent.node.keys[parent.key.text] = parent.key.where
        parent.key = None


def parse_yaml(text: str, file: str, *, construct: bool = True) -> Node:
    """Parse one YAML document into a located :class:`Node` tree.

    Args:
        text: The document.
        file: The name used in error locations.
        construct: Build typed scalars; ``False`` keeps every scalar as its text (positions only).

    Returns:
        The root node.

    Raises:
        PolicyValidationError: On any syntax error, disallowed tag, duplicate key or limit, with its location.
    """
    loader = _CoreLoader(text)
    try:
        return _Builder(loader, file, construct=construct).build()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Where(file, mark.line + 1, mark.column + 1) if mark is not None else Where(file)
        raise where.error(f"invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, exc.position)
        raise Where(file, line, column).error(f"invalid character {chr(exc.character)!r} in YAML") from exc
    except yaml.YAMLError as exc:
        raise Where(file).error(f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _short(tag: str | None) -> str:
    return "!!" + tag[len(_T) :] if tag and tag.startswith(_T) else str(tag)


def _position(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


class _DuplicateKeyError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def parse_json(text: str, file: str) -> Node:
    """Parse a JSON document into a located :class:`Node` tree.

    Values come from the JSON parser (strict JSON); positions come from reading the same text as YAML, of
    which JSON is nearly a subset.

    Raises:
        PolicyValidationError: On invalid JSON, duplicate keys or too deep nesting, with its location.
    """
    too_deep = _json_too_deep(text)
    if too_deep is not None:
        raise Where(file, *_position(text, too_deep)).error(f"nesting is deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise Where(file, exc.lineno, exc.colno).error(f"invalid JSON: {exc.msg}") from exc
    except _DuplicateKeyError as exc:
        parse_yaml(text, file, construct=False)  # reports the duplicate with its position
        raise Where(file, 1, 1).error(f"duplicate key {exc.args[0]!r}") from exc
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        match = re.search(r"\d{1000,}", text)
        where = Where(file, *_position(text, match.start())) if match else Where(file, 1, 1)
        raise where.error(f"invalid JSON number: {exc}") from exc
    try:
        # YAML rejects surrogate escapes that JSON accepts; an escape of the same length keeps positions.
        located: Node | None = parse_yaml(_SURROGATE.sub(r"\\u0041", text), file, construct=False)
    except PolicyValidationError:
        located = None
    return _graft(value, located, Where(file, 1, 1), 0)


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _json_too_deep(text: str) -> int | None:
    """Index of the first bracket nested deeper than MAX_DEPTH, ignoring brackets inside strings."""
    depth, in_string, escaped = 0, False, False
    for index, char in enumerate(text):
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), (in_string and (escaped or char != '"'))
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return index
        elif char in "]}":
            depth -= 1
    return None


def _graft(value: Any, located: Node | None, where: Where, depth: int) -> Node:
    where = located.where if located is not None else where
    if depth > MAX_DEPTH:
        raise where.error(f"nesting is deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        sub = located.value if located is not None and located.is_mapping else {}
        keys = located.keys if located is not None else {}
        node = Node({}, where)
        for key, item in value.items():
            node.value[key] = _graft(item, sub.get(key), where, depth + 1)
            node.keys[key] = keys.get(key, where)
        return node
    if isinstance(value, list):
        sub_list = located.value if located is not None and isinstance(located.value, list) else []
        items = [sub_list[i] if i < len(sub_list) else None for i in range(len(value))]
        return Node([_graft(v, n, where, depth + 1) for v, n in zip(value, items, strict=True)], where)
    return Node(value, where, text=str(value))
