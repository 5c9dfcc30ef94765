"""Offline evaluation of model bundles: metrics, benchmark loaders, baselines and reports.

Uses the runtime scorer (:mod:`csrm_guard.model`) and never imports torch. The modules are imported directly
(``csrm_guard.evaluation.metrics``, ``.datasets``, ``.run``); this package re-exports nothing so that importing it
stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
