"""Reorder the keys of a ruamel.yaml mapping so that comments stay with the keys they belong to.

ruamel.yaml stores a comment that sits *above* a key as the tail of whatever precedes it: the end-of-line
comment slot of the previous key's deepest last value, or, for the first key of a nested mapping, the parent's
"before" slot. Moving keys naively would leave those comments above the wrong key. This module splits each
stored comment into its end-of-line part (which stays with its own value) and the full lines that follow
(which belong to the next key), then reassembles them in the new order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken

__all__ = ["apply_order", "reorder"]

_ITEM_OFFSET = 2  # keys of a list item sit two columns right of its "- " (the formatter's sequence indent)


class _Token(CommentToken):
    """A comment token we built: it remembers how it splits, since it has no line information."""

    __slots__ = ("after", "eol")

    def __init__(self, value: str, column: int, eol: str | None, after: list[str]) -> None:
        super().__init__(value, CommentMark(column))
        self.eol = eol
        self.after = after


@dataclass(frozen=True, slots=True)
class _Holder:
    """Where the comment that follows a key's value is stored."""

    container: Any
    key: Any
    slot: int
    line: int | None
    block_scalar: bool

    def get(self) -> CommentToken | None:
        entry = self.container.ca.items.get(self.key)
        return entry[self.slot] if entry else None

    def set(self, token: CommentToken | None) -> None:
        entry = self.container.ca.items.setdefault(self.key, [None, None, None, None])
        entry[self.slot] = token


def apply_order(node: Any, order: dict[str, Any] | None, ancestors: tuple[tuple[Any, Any], ...] = ()) -> None:
    """Reorder every mapping under ``node`` as ``order`` says, keeping comments with their keys.

    Args:
        node: A loaded ruamel.yaml document (changed in place).
        order: ``{"__keys__": [...], "__each__": order, "__item__": order, "<key>": order}``: the key order of
            this mapping, the order of each of its values, of each item of a list, or of one key's value.
        ancestors: ``(container, key)`` pairs from ``node``'s parent up to the root.
    """
    if order is None:
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            apply_order(item, order.get("__item__"), ((node, index), *ancestors))
        return
    if not isinstance(node, CommentedMap):
        return
    for key, value in node.items():
        apply_order(value, order.get("__each__") or order.get(str(key)), ((node, key), *ancestors))
    if "__keys__" in order:
        reorder(node, _sorted_keys(list(node), order["__keys__"]), ancestors=ancestors)


def _sorted_keys(keys: list[Any], preferred: list[str]) -> list[Any]:
    rank = {key: index for index, key in enumerate(preferred)}
    # Unknown keys keep their relative order after the known ones (sorted() is stable).
    return sorted(keys, key=lambda key: rank.get(key, len(rank)))


def reorder(node: CommentedMap, keys: list[Any], *, ancestors: tuple[tuple[Any, Any], ...] = ()) -> None:
    """Put the keys of ``node`` in the order ``keys``, moving comments with their keys.

    Args:
        node: The mapping, changed in place.
        keys: Its keys in the wanted order (a permutation of the current keys).
        ancestors: ``(container, key)`` pairs from ``node``'s parent up to the root (empty for the root, whose
            leading comment stays at the top of the file as a header).
    """
    old = list(node)
    if old == keys:
        return
    holders = {key: _holder(node, key) for key in old}
    eols: dict[Any, tuple[str | None, int]] = {}
    pre: dict[Any, list[str]] = {old[0]: _head_lines(*ancestors[0]) if ancestors else _detach_header(node)}
    trailer: list[str] = []
    for index, key in enumerate(old):
        eol, column, after = _split(holders[key].get(), holders[key])
        eols[key] = (eol, column)
        if index + 1 < len(old):
            pre[old[index + 1]] = after
        else:
            trailer = after
    for key in keys:
        node.move_to_end(key)
    _place_head(node, keys[0], pre[keys[0]], ancestors)
    for index, key in enumerate(keys):
        after = pre[keys[index + 1]] if index + 1 < len(keys) else trailer
        eol, column = eols[key]
        holders[key].set(_make(eol, column, after, holders[key]))


def _is_block(value: Any) -> bool:
    if isinstance(value, CommentedMap | CommentedSeq):
        return len(value) > 0 and not value.fa.flow_style()
    return False


def _holder(container: Any, key: Any) -> _Holder:
    value = container[key]
    if _is_block(value):
        return _holder(value, len(value) - 1 if isinstance(value, CommentedSeq) else list(value)[-1])
    is_seq = isinstance(container, CommentedSeq)
    try:
        line = container.lc.item(key)[0] if is_seq else container.lc.value(key)[0]
    except (KeyError, TypeError, AttributeError):
        line = None
    block_scalar = isinstance(value, LiteralScalarString | FoldedScalarString)
    return _Holder(container, key, 0 if is_seq else 2, line, block_scalar)


def _split(token: CommentToken | None, holder: _Holder) -> tuple[str | None, int, list[str]]:
    """Return (end-of-line comment, its column, the full lines after it) of a stored comment."""
    if token is None:
        return None, 0, []
    if isinstance(token, _Token):
        return token.eol, token.column, token.after
    value, column = token.value, token.column
    token_line = getattr(token.start_mark, "line", None)
    if (
        value.startswith("#")
        and not holder.block_scalar
        and token_line is not None
        and token_line == holder.line
    ):
        eol, _, rest = value.partition("\n")
        return eol, column, rest.splitlines()
    if value.startswith("\n") and not holder.block_scalar:
        return None, 0, value[1:].splitlines()
    return None, 0, (" " * column + value).splitlines()


def _make(eol: str | None, column: int, after: list[str], holder: _Holder) -> CommentToken | None:
    if eol is None and not after:
        return None
    body = "".join(line + "\n" for line in after)
    if eol is not None:
        return _Token(eol + "\n" + body, column, eol, after)
    if holder.block_scalar:  # a block scalar ends its own line: the first comment line starts at its indent
        first = after[0]
        indent = len(first) - len(first.lstrip(" "))
        return _Token(body[indent:], indent, None, after)
    return _Token("\n" + body, 0, None, after)


def _detach_header(root: CommentedMap) -> list[str]:
    """Split the comment above a document's first key into the file header and the key's own comment.

    The header is everything up to the last blank line; it stays at the top of the file. The lines after it
    sit directly above the first key and are returned, to move with that key.
    """
    tokens = root.ca.comment[1] if root.ca.comment and len(root.ca.comment) > 1 and root.ca.comment[1] else []
    lines = "".join(" " * token.column + token.value for token in tokens).splitlines()
    blanks = [index for index, line in enumerate(lines) if not line.strip()]
    cut = blanks[-1] + 1 if blanks else 0
    header, own = lines[:cut], lines[cut:]
    if own:
        root.ca.comment[1] = [_plain_token(header)] if header else []
    return own


def _head_lines(parent: Any, key: Any) -> list[str]:
    if parent is None or not isinstance(parent, CommentedMap):
        return []
    entry = parent.ca.items.get(key)
    tokens = entry[3] if entry and len(entry) > 3 and entry[3] else []
    return "".join(" " * token.column + token.value for token in tokens).splitlines()


def _place_head(
    node: CommentedMap, first: Any, lines: list[str], ancestors: tuple[tuple[Any, Any], ...]
) -> None:
    """Put the comment lines that belong above ``node``'s new first key where ruamel.yaml will emit them."""
    parent, key = ancestors[0] if ancestors else (None, 0)
    if isinstance(parent, CommentedMap):
        entry = parent.ca.items.setdefault(key, [None, None, None, None])
        entry[3] = [_plain_token(lines)] if lines else None
    elif not lines:
        return
    elif isinstance(parent, CommentedSeq) and key > 0:
        # Above the item's "- " line: the tail of the previous item.
        holder = _holder(parent, key - 1)
        eol, column, after = _split(holder.get(), holder)
        holder.set(_make(eol, column, after + _outdent(lines), holder))
    elif (
        isinstance(parent, CommentedSeq) and len(ancestors) > 1 and isinstance(ancestors[1][0], CommentedMap)
    ):
        # Above the first item's "- " line: the head of the list.
        grand, seq_key = ancestors[1]
        entry = grand.ca.items.setdefault(seq_key, [None, None, None, None])
        entry[3] = [_plain_token(_head_lines(grand, seq_key) + _outdent(lines))]
    else:  # the document root (below its header), or a list nested in a list
        node.ca.items.setdefault(first, [None, None, None, None])[1] = [_plain_token(lines)]


def _plain_token(lines: list[str]) -> CommentToken:
    first = lines[0]
    indent = len(first) - len(first.lstrip(" "))
    body = "".join(line + "\n" for line in lines)[indent:]
    return CommentToken(body, CommentMark(indent))


def _outdent(lines: list[str]) -> list[str]:
    """Move comment lines from a list item's keys out to the item's ``- `` column."""
    return [line[_ITEM_OFFSET:] if line.startswith(" " * _ITEM_OFFSET) else line for line in lines]
