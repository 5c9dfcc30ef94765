"""pytest plugin that collects policy test cases as pytest items (filled in by the review workflow)."""

from __future__ import annotations

__all__: list[str] = []
