"""Importing the runtime never loads torch, transformers or datasets (checked in a fresh interpreter)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

_HEAVY = ("torch", "transformers", "datasets")
_CORE = ["csrm_guard", "csrm_guard.policy", "csrm_guard.cli"]
_OPTIONAL = [
    "csrm_guard.model",
    "csrm_guard.guard",
    "csrm_guard.middleware",
    "csrm_guard.middleware.asgi",
    "csrm_guard.middleware.openai",
    "csrm_guard.middleware.hooks",
    "csrm_guard.review",
    "csrm_guard.testing",
]


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _heavy_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {_HEAVY!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_leaves_heavy_modules_unloaded():
    """Importing each runtime module in turn loads none of torch, transformers and datasets."""
    modules = _CORE + [name for name in _OPTIONAL if _exists(name)]
    code = "\n".join(
        f"import {module}\nassert not [m for m in {_HEAVY!r} if m in sys.modules], {module!r}"
        for module in modules
    )
    assert _heavy_after("import sys\n" + code) == []


def test_building_the_cli_parser_stays_light():
    """Registering every CLI subcommand (as `csrm-guard --help` does) loads no training dependency."""
    assert _heavy_after("from csrm_guard.cli import build_parser\nbuild_parser()") == []
