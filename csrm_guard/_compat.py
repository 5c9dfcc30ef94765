"""Optional-dependency helpers: one place that turns a missing extra into a clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from csrm_guard.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or explain which extra installs it.

    Args:
        module: The module to import, e.g. ``"openai"``.
        extra: The csrm-guard extra that provides it, e.g. ``"openai"``.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: When the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is required for this feature; install it with: pip install 'csrm-guard[{extra}]'"
        ) from exc
