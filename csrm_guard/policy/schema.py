"""The policy format: frozen Pydantic models, their validation rules and the JSON Schema export.

A policy built in Python and the same policy loaded from YAML are equal objects with the same
:attr:`Policy.hash`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from csrm_guard._types import Stage
from csrm_guard.errors import PolicyValidationError, TemplateError
from csrm_guard.policy._problems import LocatedValueError, format_path, problems_from, suggest
from csrm_guard.policy._sandbox import compile_refusal
from csrm_guard.policy.severity import Action, FailMode, Severity
from csrm_guard.policy.taxonomy import load_taxonomy

__all__ = [
    "API_VERSION",
    "AuditSettings",
    "CategoryRule",
    "Expectation",
    "Policy",
    "PolicyTest",
    "Rule",
    "StageSettings",
    "TestMessage",
    "policy_json_schema",
    "suggest",
]

API_VERSION: Final = "csrm-guard/v1"
"""The only policy format version this package reads."""

_ID_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"
_GUIDELINE_ID = re.compile(r"^guidelines\.[1-9][0-9]*$")
Expectation = Literal["allow", "violation", "block", "refuse", "regenerate", "best_of_n", "monitor"]
"""What a policy test expects: an outcome, or ``violation`` for any outcome other than ``allow``."""


def _known_category(key: str) -> str:
    taxonomy = load_taxonomy()
    if key not in taxonomy.by_id:
        raise ValueError(f"unknown category {key!r}{suggest(key, taxonomy.ids)}")
    return key


CategoryId = Annotated[str, AfterValidator(_known_category)]
"""A standard category id from the taxonomy."""


class _Model(BaseModel):
    """Base of every policy model: frozen, strict about unknown keys, errors mapped to our exception tree."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _from_pydantic(exc, type(self)) from exc

    # Marks the override as a plain base __init__ so pydantic does not call it while validating nested
    # models: nested errors then stay in one ValidationError with their full path instead of surfacing early.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate ``obj`` (a mapping) into this model.

        Raises:
            PolicyValidationError: Listing every problem with its field path.
        """
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _from_pydantic(exc, cls) from exc


def _from_pydantic(exc: ValidationError, model: type[BaseModel]) -> PolicyValidationError:
    found = [
        PolicyValidationError(
            problem.message, file=f"<{model.__name__}>", field=format_path(problem.loc) or None
        )
        for problem in problems_from(exc, model)
    ]
    first = found[0]
    return PolicyValidationError(first.problem, file=first.file, field=first.field, related=tuple(found[1:]))


class CategoryRule(_Model):
    """How a policy treats one standard category.

    Attributes:
        allowed: ``True`` turns the category off entirely (any severity allowed).
        max_severity: The highest severity tolerated; anything above it is a violation. ``none`` (the default)
            means any content in the category is a violation.
        description: Replaces the taxonomy's description, to narrow or widen what the category means here.
        action: Overrides the stage action for violations of this category.
    """

    allowed: bool = False
    max_severity: Severity = Severity.NONE
    description: str | None = Field(default=None, min_length=1, max_length=4000)
    action: Action | None = None

    @property
    def effective_max(self) -> Severity:
        """The highest tolerated severity, ``high`` when the category is allowed."""
        return Severity.HIGH if self.allowed else self.max_severity


class Rule(_Model):
    """A free-text custom rule, judged by the model as written.

    Attributes:
        id: A short slug used in decisions, logs and tests.
        text: The rule in natural language, phrased as what is not allowed (or what must hold).
        stages: The stages the rule applies to.
        action: Overrides the stage action for violations of this rule.
    """

    id: str = Field(pattern=_ID_PATTERN)
    text: str = Field(min_length=1, max_length=4000)
    stages: tuple[Stage, ...] = ("input", "output")
    action: Action | None = None

    @field_validator("stages")
    @classmethod
    def _distinct_stages(cls, stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
        if not stages or len(set(stages)) != len(stages):
            raise ValueError("stages must list 'input' and/or 'output' once each")
        return stages


class StageSettings(_Model):
    """Enforcement settings for one stage (``input`` or ``output``).

    Attributes:
        enabled: Whether the stage is checked at all.
        action: What to do on a violation.
        threshold: Calibrated violation probability at or above which a clause counts as violated; ``None``
            uses the threshold the model bundle recommends for the stage (fitted on development data).
        timeout_ms: How long a check may take before the fail mode applies.
        fail: What to do when no decision can be reached.
        max_attempts: Generation attempts for ``regenerate`` (including the first).
        candidates: Number of candidates for ``best_of_n``.
        hold_back_chars: Streaming window: characters held back until checked.
    """

    enabled: bool = True
    action: Action = Action.BLOCK
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    timeout_ms: int = Field(default=2000, gt=0, le=600_000)
    fail: FailMode = FailMode.CLOSED
    max_attempts: int = Field(default=2, ge=1, le=10)
    candidates: int = Field(default=4, ge=2, le=16)
    hold_back_chars: int = Field(default=200, ge=1, le=100_000)


class AuditSettings(_Model):
    """What audit records may contain.

    Attributes:
        include_text: Put the raw conversation and response in audit records (off by default).
        redact: Regular expressions whose matches are replaced by ``[REDACTED]`` when text is included.
    """

    include_text: bool = False
    redact: tuple[str, ...] = ()


class TestMessage(_Model):
    """One message of a policy test conversation."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=200_000)


class PolicyTest(_Model):
    """An example conversation with the decision the policy must reach.

    Attributes:
        name: The case name shown by ``csrm-guard test``.
        messages: The conversation before the judged turn (or up to and including the judged user turn).
        response: The assistant response to judge; when present the case checks the ``output`` stage.
        stage: Which stage to check; inferred from ``response`` when omitted.
        expect: The expected outcome, or ``violation`` for any non-allow outcome.
        violations: Rule or category ids that must be among the violations.
        min_probability: Lower bound on the policy-level violation probability.
        max_probability: Upper bound on the policy-level violation probability.
        note: Why this case exists (shown on failure).
        xfail: Marks a known model limitation, like pytest's ``xfail(strict=True)``: the reason the decision is
            expected to be wrong. Such a case that misses its expectations is reported ``xfailed`` and does not
            fail the run; one that meets them is ``xpassed`` and fails it, so the marker is removed once the
            model gets the case right. A case that cannot be decided is still an error.
    """

    __test__ = False  # keep pytest from collecting this class

    name: str = Field(min_length=1, max_length=200)
    messages: tuple[TestMessage, ...] = Field(min_length=1)
    response: str | None = Field(default=None, max_length=200_000)
    stage: Stage | None = None
    expect: Expectation
    violations: tuple[str, ...] = ()
    min_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    max_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    note: str | None = None
    xfail: str | None = Field(
        default=None, min_length=1, max_length=500, json_schema_extra={"pattern": r"\S"}
    )

    @field_validator("xfail", mode="before")
    @classmethod
    def _xfail_reason(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("takes the reason as text (why the model gets this case wrong), not true/false")
        if isinstance(value, str) and not value.strip():
            raise ValueError("needs a reason (why the model gets this case wrong), not an empty string")
        return value

    @property
    def judged_stage(self) -> Stage:
        """The stage this case checks."""
        if self.stage is not None:
            return self.stage
        return "output" if self.response is not None else "input"

    @model_validator(mode="after")
    def _consistent(self) -> PolicyTest:
        if self.judged_stage == "output" and self.response is None:
            raise ValueError("an output-stage test needs a 'response'")
        if self.expect == "allow" and self.violations:
            raise ValueError("a test that expects 'allow' cannot list expected violations")
        return self


class Policy(_Model):
    """A complete, validated safety policy.

    Build one in Python or load one with :func:`csrm_guard.load_policy`; both give equal objects and hashes.

    Attributes:
        api_version: Format version, always ``csrm-guard/v1``.
        name: The policy's name (a slug).
        version: The policy's own version string, shown in audit logs.
        description: What the deployment is and who it serves.
        extends: Policies this one was built on (recorded after loading; resolution happens in the loader).
        categories: Standard category id -> how this policy treats it. Unlisted categories are not checked,
            except hard limits, which always apply.
        rules: Free-text custom rules.
        guidelines: A content-policy document in natural language; the runtime splits it into clauses.
        input: Settings for checks of the user's turn.
        output: Settings for checks of the assistant's response.
        refusal: Jinja template of the refusal message (variables: ``policy``, ``stage``, ``violations``).
        audit: What audit records may contain.
        tests: Example conversations with expected decisions.

    Example:
        >>> policy = Policy(name="demo", categories={"violence": CategoryRule(max_severity="low")})
        >>> policy.categories["violence"].max_severity
        <Severity.LOW: 'low'>

    .. versionadded:: 0.1
    """

    api_version: Literal["csrm-guard/v1"] = "csrm-guard/v1"
    name: str = Field(pattern=_ID_PATTERN)
    version: str = Field(default="1", min_length=1, max_length=64)
    description: str = Field(default="", max_length=4000)
    extends: tuple[str, ...] = ()
    categories: dict[CategoryId, CategoryRule] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    guidelines: str | None = Field(default=None, min_length=1, max_length=200_000)
    input: StageSettings = Field(default_factory=StageSettings)
    output: StageSettings = Field(default_factory=StageSettings)
    refusal: str = Field(default="I can't help with that request.", min_length=1, max_length=4000)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    tests: tuple[PolicyTest, ...] = ()

    @field_validator("version", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        # `version: 3` in YAML is an int; a float such as 1.10 would lose digits, so only ints are converted.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("refusal", mode="after")
    @classmethod
    def _safe_refusal(cls, value: str) -> str:
        try:
            compile_refusal(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("extends", mode="before")
    @classmethod
    def _single_extends(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("categories", mode="after")
    @classmethod
    def _hard_limits(cls, categories: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        taxonomy = load_taxonomy()
        for category_id, rule in categories.items():
            ceiling = taxonomy.get(category_id).ceiling
            if rule.effective_max > ceiling:
                limit = (
                    "is a hard limit: no policy may allow it"
                    if ceiling is Severity.NONE
                    else f"cannot be allowed above {ceiling.value!r} severity (a hard limit)"
                )
                field = "allowed" if rule.allowed else "max_severity"
                raise LocatedValueError(f"category {category_id!r} {limit}", (category_id, field))
        return categories

    @field_validator("rules", mode="after")
    @classmethod
    def _unique_rule_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.id in seen:
                raise LocatedValueError(f"rule id {rule.id!r} is used twice", (index, "id"))
            seen.add(rule.id)
        return rules

    @model_validator(mode="after")
    def _ids_and_tests(self) -> Policy:
        taxonomy = load_taxonomy()
        for index, rule in enumerate(self.rules):
            if rule.id in taxonomy.by_id:
                raise LocatedValueError(
                    f"rule id {rule.id!r} clashes with a standard category id", ("rules", index, "id")
                )
        checked = [cid for cid, rule in self.categories.items() if not rule.allowed]
        checked += [c.id for c in taxonomy.categories if c.hard_limit and c.id not in self.categories]
        known = [*checked, *(rule.id for rule in self.rules)]
        for index, test in enumerate(self.tests):
            for position, name in enumerate(test.violations):
                if name not in known and not (self.guidelines and _GUIDELINE_ID.match(name)):
                    raise LocatedValueError(
                        f"{name!r} is not a category or rule this policy checks{suggest(name, known)}",
                        ("tests", index, "violations", position),
                    )
        return self

    @functools.cached_property
    def hash(self) -> str:
        """sha256 of the policy's canonical JSON.

        ``tests`` and ``extends`` are left out: they do not change decisions, so a policy loaded through an
        ``extends`` chain hashes like the same policy written out in full.
        """
        return _policy_hash(self)

    def stage(self, stage: Stage) -> StageSettings:
        """Return the settings of ``stage``."""
        return self.input if stage == "input" else self.output

    def __hash__(self) -> int:
        return hash(self.hash)


def _policy_hash(policy: Policy) -> str:
    payload = policy.model_dump(mode="json", exclude={"tests", "extends"})
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the policy file format, for editors and CI.

    Returns:
        A JSON Schema (draft 2020-12) document.
    """
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://csrm-guard.dev/schema/policy-v1.json"
    # Category keys are restricted to the taxonomy so editors can complete and flag them.
    schema["properties"]["categories"]["propertyNames"] = {"enum": list(load_taxonomy().ids)}
    # Files may write a single parent as a plain string.
    extends = schema["properties"]["extends"]
    schema["properties"]["extends"] = {
        "anyOf": [{"type": "string"}, {k: v for k, v in extends.items() if k not in {"default", "title"}}],
        "default": [],
        "title": extends.get("title", "Extends"),
    }
    # A file that extends others may override an inherited rule by id without repeating its text, and may
    # remove an inherited category with null; a file that extends nothing needs every rule's text.
    schema["$defs"]["Rule"]["required"] = ["id"]
    categories = schema["properties"]["categories"]
    categories["additionalProperties"] = {"anyOf": [categories["additionalProperties"], {"type": "null"}]}
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {"properties": {"rules": {"items": {"required": ["id", "text"]}}}}
    return schema
