"""Offline training, data building and export of the CSRM (imports torch and transformers).

Nothing in the runtime (policy, model, guard, middleware, review, cli at import time) imports this package; the
CLI imports its modules lazily inside the ``data``, ``train`` and ``export`` commands. This ``__init__`` imports
nothing eagerly, so that ``csrm_guard.training.data`` (no torch) can be used without torch installed.
"""

from __future__ import annotations

__all__: list[str] = []
