"""The policy review workflow: tests beside policies, impact diffs for pull requests, formatting.

The same functions serve ``csrm-guard test|diff|fmt``, the pytest plugin and CI: :func:`run_policy_tests` runs
the cases found beside policies through the guard, and :func:`diff_policies` shows what a policy change does,
both semantically and on real conversations. Output formats live in :mod:`csrm_guard.review.report`.
"""

from __future__ import annotations

from csrm_guard.review.diff import DiffReport, diff_policies
from csrm_guard.review.discover import discover
from csrm_guard.review.runner import TestRun, run_policy_tests

__all__ = ["DiffReport", "TestRun", "diff_policies", "discover", "run_policy_tests"]
