"""Load policies from YAML or JSON files and policy folders.

(Minimal first version; the foundation work replaces it with line/column-aware errors and ``extends``.)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from csrm_guard.errors import PolicyValidationError
from csrm_guard.policy.schema import Policy

__all__ = ["load_policy"]


def load_policy(path: str | Path) -> Policy:
    """Load a policy from a file or a policy folder (``<folder>/policy.yaml``).

    Args:
        path: A ``.yaml``, ``.yml`` or ``.json`` file, or a folder holding ``policy.yaml``.

    Returns:
        The validated policy.

    Raises:
        PolicyValidationError: When the file cannot be read or is invalid.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "policy.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyValidationError(str(exc), file=str(path)) from exc
    return Policy.model_validate(data)
