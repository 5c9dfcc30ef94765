"""Integrations with chat stacks; this package imports none of their frameworks.

Each integration lives in its own module and imports its framework there, so ``import csrm_guard.middleware``
costs nothing.

- :mod:`csrm_guard.middleware.asgi`: ``GuardMiddleware``, pure ASGI, for OpenAI-compatible
  ``/v1/chat/completions`` endpoints (Starlette, FastAPI), streaming included.
- :mod:`csrm_guard.middleware.openai`: ``GuardedOpenAI`` / ``GuardedAsyncOpenAI``, wrapping the official
  client (needs ``pip install 'csrm-guard[openai]'``).
- :mod:`csrm_guard.middleware.hooks`: ``GuardHooks``, framework-neutral before/after-generation hooks.
"""

from __future__ import annotations

__all__: list[str] = []
