"""Package data: hand-written harmless hard negatives (``*.yaml``), read by :mod:`..hard_negatives`."""

from __future__ import annotations

__all__: list[str] = []
