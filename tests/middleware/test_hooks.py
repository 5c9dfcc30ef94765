"""Tests of the framework-neutral before/after-generation hooks."""

from __future__ import annotations

import pytest

from csrm_guard import ViolationError
from csrm_guard.middleware.hooks import GuardHooks

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hi"}]


async def test_hooks_proceed_refuse_and_block(make_guard) -> None:
    """Clean turns proceed, refused answers carry the refusal, blocked turns raise; ids correlate."""
    hooks = GuardHooks(make_guard(output={"action": "refuse"}))
    before = hooks.before_generation(USER)
    assert before.proceed
    after = await hooks.aafter_generation(USER, "FORBIDDEN", request_id=before.request_id)
    assert (after.proceed, after.text) == (False, "I can't help with that request.")
    assert after.request_id == before.request_id
    with pytest.raises(ViolationError):
        await hooks.abefore_generation([{"role": "user", "content": "FORBIDDEN"}])
    assert hooks.after_generation(USER, "fine").proceed


def test_importing_middleware_loads_no_framework() -> None:
    """Importing csrm_guard.middleware (and hooks) loads neither starlette nor openai."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, csrm_guard, csrm_guard.middleware, csrm_guard.middleware.hooks, csrm_guard.middleware.asgi;"
        "bad=[m for m in ('openai','starlette','torch','transformers') if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
