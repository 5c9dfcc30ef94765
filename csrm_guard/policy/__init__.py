"""Policy-as-code core: the schema, the taxonomy, the loader and the renderer.

This subpackage is pure: it reads policy files and templates and does no other I/O. It imports only
:mod:`csrm_guard.errors` and :mod:`csrm_guard._types` from the rest of the package.
"""

from __future__ import annotations

from csrm_guard.policy.loader import load_policy
from csrm_guard.policy.render import Clause, RenderedPolicy, render_policy, render_transcript
from csrm_guard.policy.schema import CategoryRule, Policy, PolicyTest, Rule, StageSettings
from csrm_guard.policy.severity import Action, FailMode, Severity
from csrm_guard.policy.taxonomy import Category, Taxonomy, load_taxonomy

__all__ = [
    "Action",
    "Category",
    "CategoryRule",
    "Clause",
    "FailMode",
    "Policy",
    "PolicyTest",
    "RenderedPolicy",
    "Rule",
    "Severity",
    "StageSettings",
    "Taxonomy",
    "load_policy",
    "load_taxonomy",
    "render_policy",
    "render_transcript",
]
