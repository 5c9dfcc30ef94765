"""Shared type aliases and protocols used across csrm_guard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias, TypedDict

__all__ = ["JSONValue", "Message", "Messages", "Outcome", "Role", "Stage"]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
"""The roles a chat message may carry (OpenAI style)."""

Stage: TypeAlias = Literal["input", "output"]
"""Which turn a check judges: the last user turn (``input``) or the assistant's response (``output``)."""


class Message(TypedDict):
    """One chat message, OpenAI style."""

    role: str
    content: str


Messages: TypeAlias = Sequence[Mapping[str, str]]
"""A conversation: a sequence of ``{"role": ..., "content": ...}`` mappings."""

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
"""Any value that round-trips through JSON."""

Outcome: TypeAlias = Literal["allow", "block", "refuse", "regenerate", "best_of_n", "monitor"]
"""What a check decided: ``allow``, or the action taken on a violation (``monitor`` = violation logged, allowed)."""
