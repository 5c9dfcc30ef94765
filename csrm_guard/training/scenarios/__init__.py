"""Package data: hand-written business-rule scenario families (``*.yaml``), read by :mod:`..scenario_rules`."""

from __future__ import annotations

__all__: list[str] = []
