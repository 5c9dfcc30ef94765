"""Enforcement: the :class:`Guard`, its decisions, and the drivers for sync, async and streamed calls.

This subpackage has no optional dependencies. It re-exports the names application code needs.
"""

from __future__ import annotations

from csrm_guard._types import Outcome
from csrm_guard.guard._core import Decision, Violation
from csrm_guard.guard.guard import Guard
from csrm_guard.model.types import Verdict

__all__ = ["Decision", "Guard", "Outcome", "Verdict", "Violation"]
