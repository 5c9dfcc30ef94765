"""The public API: ``__all__`` lists exactly the public names, sorted (like httpx's test_exported_members).

"Sorted" is ruff's RUF022 order (isort style): CONSTANTS, then Classes, then everything else, each group
alphabetical, so that this test and ``ruff check`` never disagree.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

import csrm_guard

_PACKAGES = ["csrm_guard", "csrm_guard.policy"]


def _isort_key(member: str) -> tuple[int, str]:
    if member.isupper() and len(member) > 1:
        return (0, member)
    return (1, member) if member[:1].isupper() else (2, member)


def _module_files() -> list[Path]:
    root = Path(csrm_guard.__file__).parent
    return sorted(p for p in root.rglob("*.py") if "training" not in p.parts and p.name != "__main__.py")


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.If | ast.Try):  # conditional definitions (TYPE_CHECKING, fallbacks)
            names |= _defined_names(ast.Module(body=list(ast.iter_child_nodes(node)), type_ignores=[]))  # type: ignore[arg-type]
    return names


@pytest.mark.parametrize("name", _PACKAGES)
def test_all_matches_public_names(name):
    """A package's __all__ is exactly its public, non-module attributes, in sorted order."""
    module = importlib.import_module(name)
    public = {
        member
        for member, value in vars(module).items()
        if (not member.startswith("_") or member == "__version__")
        and not isinstance(value, types.ModuleType)
        and member != "annotations"  # from __future__ import annotations
    }
    assert module.__all__ == sorted(public, key=_isort_key)


def test_top_level_exports_the_policy_api():
    """The documented policy entry points are importable from the top level."""
    for name in ("Policy", "CategoryRule", "Rule", "Severity", "Action", "PolicyTest", "load_policy"):
        assert name in csrm_guard.__all__


@pytest.mark.parametrize(
    "path", _module_files(), ids=lambda p: str(p.relative_to(Path(csrm_guard.__file__).parent))
)
def test_every_module_declares_a_sorted_all(path):
    """Every runtime module declares a literal __all__, sorted, naming only names it defines (read statically)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(t, ast.Name) and t.id == "__all__"
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    assert declared, f"{path} has no __all__"
    exported = ast.literal_eval(declared[-1])
    assert list(exported) == sorted(exported, key=_isort_key), f"{path}: __all__ is not sorted"
    missing = sorted(set(exported) - _defined_names(tree))
    assert not missing, f"{path}: __all__ names undefined {missing}"
