"""pytest plugin: collect policy test cases as pytest items, so a project's test suite includes its policies.

Installed with csrm-guard (entry point ``pytest11``) and inactive until asked for, so it never changes what an
unrelated test suite collects. Turn it on with ``--csrm-policies`` or in the pytest configuration::

    [tool.pytest.ini_options]
    testpaths = ["tests", "policies"]
    csrm_policies = true
    csrm_model = "models/my-bundle"   # optional; the shipped default bundle otherwise

Then ``policy.yaml`` files (their inline ``tests:``) and ``*_test.yaml`` files under the collected paths become
test files, each case a test item marked ``csrm_policy`` (``-m "not csrm_policy"`` skips them). A case marked
``xfail`` in its file is reported as a pytest xfail while its decision misses the expectations, and fails (as
``xpassed``, strict) once it meets them. One model is loaded per session and shared by every case. To run the
cases against a test double instead of a model, define the hook in a ``conftest.py``::

    def pytest_csrm_guard_scorer(config):
        return FakeScorer(lambda clause, transcript: 0.0)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from csrm_guard.model.types import AsyncScorer, Scorer
    from csrm_guard.review.discover import PolicyCase
    from csrm_guard.review.runner import CaseResult, GuardPool

__all__ = ["PolicyCaseError", "PolicyFile", "PolicyItem"]

logger = logging.getLogger(__name__)

_POOL_KEY = pytest.StashKey["GuardPool"]()
_MARKER = "csrm_policy"


class _HookSpecs:
    """Hooks this plugin adds to pytest."""

    @pytest.hookspec(firstresult=True)
    def pytest_csrm_guard_scorer(self, config: pytest.Config) -> Scorer | AsyncScorer | None:
        """Return the scorer policy cases run with (e.g. a ``FakeScorer``); ``None`` loads the model bundle."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register :meth:`_HookSpecs.pytest_csrm_guard_scorer`."""
    pluginmanager.add_hookspecs(_HookSpecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--csrm-policies`` and ``--csrm-model`` and their ini twins."""
    group = parser.getgroup("csrm-guard", "csrm-guard policy tests")
    group.addoption("--csrm-policies", action="store_true", help="collect policy test cases as test items")
    group.addoption("--csrm-model", metavar="BUNDLE", help="model bundle folder for policy test cases")
    parser.addini("csrm_policies", type="bool", default=False, help="collect policy test cases as test items")
    parser.addini("csrm_model", default="", help="model bundle folder for policy test cases")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``csrm_policy`` marker."""
    config.addinivalue_line("markers", f"{_MARKER}: a csrm-guard policy test case")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the guards and the model loaded for the session."""
    pool = config.stash.get(_POOL_KEY, None)
    if pool is not None:
        pool.close()
        del config.stash[_POOL_KEY]


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("csrm_policies") or config.getini("csrm_policies"))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> PolicyFile | None:
    """Collect ``policy.yaml`` and ``*_test.yaml`` files when the plugin is enabled."""
    if not _enabled(parent.config):
        return None
    from csrm_guard.review.discover import is_policy_file, is_test_file  # noqa: PLC0415  (keep pytest start fast)

    if is_policy_file(file_path) or is_test_file(file_path):
        return PolicyFile.from_parent(parent, path=file_path)
    return None


def _pool(config: pytest.Config) -> GuardPool:
    if _POOL_KEY not in config.stash:
        from csrm_guard.review.runner import GuardPool  # noqa: PLC0415

        scorer = config.hook.pytest_csrm_guard_scorer(config=config)
        model = config.getoption("csrm_model") or config.getini("csrm_model") or None
        config.stash[_POOL_KEY] = GuardPool(model, scorer=scorer)
    return config.stash[_POOL_KEY]


class PolicyFile(pytest.File):
    """A policy file (its inline cases) or a tests file, collected as a pytest file."""

    def collect(self) -> list[PolicyItem]:
        """Load the cases written in this file."""
        from csrm_guard.errors import PolicyError  # noqa: PLC0415
        from csrm_guard.review.discover import load_cases  # noqa: PLC0415

        try:
            cases = load_cases(self.path)
        except PolicyError as exc:
            raise self.CollectError(str(exc)) from exc  # shown as the message alone, without a traceback
        return [PolicyItem.from_parent(self, name=case.test.name, case=case) for case in cases]


class PolicyCaseError(AssertionError):
    """A policy case whose decision is not the expected one, that passed despite ``xfail``, or that errored.

    Attributes:
        result: The case's result.
    """

    def __init__(self, result: CaseResult) -> None:
        self.result = result
        super().__init__(result.error or "; ".join(result.messages))


class PolicyItem(pytest.Item):
    """One policy test case as a pytest item."""

    def __init__(self, *, case: PolicyCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.add_marker(_MARKER)

    def runtest(self) -> None:
        """Check the case's conversation with its policy's guard and compare with the expectation.

        Raises:
            PolicyCaseError: When the case failed, errored or passed despite its ``xfail`` marker.
        """
        from csrm_guard.review.runner import run_case  # noqa: PLC0415

        result = run_case(_pool(self.config), self.case)
        if result.status == "xfailed":
            pytest.xfail(f"{self.case.test.xfail} ({'; '.join(result.failures)})")
        if not result.passed:
            raise PolicyCaseError(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        """Explain a failed case with the decision, the probability and the violated clauses."""
        if isinstance(excinfo.value, PolicyCaseError):
            from csrm_guard.review.report import failure_details  # noqa: PLC0415

            result = excinfo.value.result
            return "\n".join([f"policy case {self.case.id} {result.status}", *failure_details(result)])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Point reports at the case's file and line."""
        line = self.case.line - 1 if self.case.line is not None else None
        return self.path, line, f"policy case {self.case.id}"
