"""Ordered severity levels and the enforcement actions a policy can choose."""

from __future__ import annotations

import enum

__all__ = ["Action", "FailMode", "Severity"]


class Severity(enum.StrEnum):
    """How harmful content is within a category, ordered ``none < low < moderate < high``."""

    NONE = "none"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for ``none`` up to 3 for ``high``."""
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Severity:
        """Return the severity with the given rank (0-3)."""
        return _LEVELS[rank]

    # str defines all four comparisons alphabetically, so each is overridden to compare by rank. A plain
    # string is read as a level name ("low" < Severity.HIGH); anything else raises TypeError, never falling
    # back to str's alphabetical order through the reflected operator.
    def _other_rank(self, other: object) -> int:
        if isinstance(other, str) and other in _BY_VALUE:
            return _BY_VALUE[other].rank
        raise TypeError(f"cannot compare Severity with {type(other).__name__} {other!r}")

    def __lt__(self, other: object) -> bool:
        return self.rank < self._other_rank(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= self._other_rank(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > self._other_rank(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= self._other_rank(other)


_LEVELS = (Severity.NONE, Severity.LOW, Severity.MODERATE, Severity.HIGH)
_RANKS = {level: rank for rank, level in enumerate(_LEVELS)}
_BY_VALUE = {level.value: level for level in _LEVELS}


class Action(enum.StrEnum):
    """What the guard does when a stage finds a violation."""

    BLOCK = "block"
    """Raise :class:`csrm_guard.ViolationError` carrying the decision."""
    REFUSE = "refuse"
    """Return the policy's rendered refusal in the shape the wrapped function returns."""
    REGENERATE = "regenerate"
    """Call the generator again with the violation fed back (bounded attempts)."""
    BEST_OF_N = "best_of_n"
    """Generate n candidates and return the compliant one with the highest reward, or refuse."""
    MONITOR = "monitor"
    """Log what would have happened; never interfere."""


class FailMode(enum.StrEnum):
    """What a stage does when no decision can be reached (scorer error or timeout)."""

    CLOSED = "closed"
    """Treat the check as a violation (the default)."""
    OPEN = "open"
    """Allow the call and log the failure."""
