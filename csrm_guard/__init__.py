"""csrm_guard: policy-as-code guardrails for LLM calls, enforced by an in-process configurable safety reward model.

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from __future__ import annotations

from csrm_guard.errors import (
    BundleError,
    BundleIntegrityError,
    CheckError,
    CsrmGuardError,
    InputError,
    MissingDependencyError,
    ModelError,
    PolicyError,
    PolicyValidationError,
    ScorerError,
    ScorerTimeout,
    TemplateError,
    ViolationError,
)
from csrm_guard.guard import Decision, Guard, Violation
from csrm_guard.model import AsyncScorer, OnnxScorer, Scorer, load_bundle
from csrm_guard.policy import (
    Action,
    CategoryRule,
    FailMode,
    Policy,
    PolicyTest,
    Rule,
    Severity,
    StageSettings,
    load_policy,
    render_policy,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AsyncScorer",
    "BundleError",
    "BundleIntegrityError",
    "CategoryRule",
    "CheckError",
    "CsrmGuardError",
    "Decision",
    "FailMode",
    "Guard",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "OnnxScorer",
    "Policy",
    "PolicyError",
    "PolicyTest",
    "PolicyValidationError",
    "Rule",
    "Scorer",
    "ScorerError",
    "ScorerTimeout",
    "Severity",
    "StageSettings",
    "TemplateError",
    "Violation",
    "ViolationError",
    "__version__",
    "load_bundle",
    "load_policy",
    "render_policy",
]
