"""Package data: hand-written harmful examples with known severity (``*.yaml``), read by :mod:`..harmful_examples`."""

from __future__ import annotations

__all__: list[str] = []
