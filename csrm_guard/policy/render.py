"""Render policies into the clauses the model reads, and conversations into transcripts.

Everything goes through one sandboxed Jinja environment with ``StrictUndefined``. Text that users write in
policies (descriptions, rule texts, guidelines, conversation content) is passed to templates as *data*, never
compiled as a template, so template syntax inside a rule cannot execute. The one user-supplied template, the
refusal message, is checked and compiled in a stricter sandbox (:mod:`csrm_guard.policy._sandbox`).

Templates are versioned (:data:`TEMPLATE_VERSION`) and hashed (:func:`template_hash`); the hash of a rendered
policy (:attr:`RenderedPolicy.hash`) identifies it in logs and model manifests. Training data is rendered with
the same functions, so training and serving read the same text.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from csrm_guard._types import Messages, Stage
from csrm_guard.errors import InputError, TemplateError
from csrm_guard.policy._sandbox import compile_refusal
from csrm_guard.policy.schema import CategoryRule, Policy, Rule
from csrm_guard.policy.severity import Action, Severity
from csrm_guard.policy.taxonomy import Category, load_taxonomy

__all__ = [
    "TEMPLATE_VERSION",
    "Clause",
    "ClauseKind",
    "RenderedPolicy",
    "render_category_clause",
    "render_guideline_clause",
    "render_policy",
    "render_refusal",
    "render_rule_clause",
    "render_transcript",
    "split_guidelines",
    "template_hash",
]

TEMPLATE_VERSION = "1"
"""Version of the clause and transcript templates; a model bundle records the version it was trained with."""

ClauseKind = Literal["category", "rule", "guideline"]
# The templates whose output the model reads; config.j2 (reviewer text) is left out of the template hash so
# that rewording the reviewer view does not make trained model bundles incompatible.
_TEMPLATES = ("clause_category.j2", "clause_rule.j2", "clause_guideline.j2", "transcript.j2")
_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class Clause:
    """One rendered policy rule: the text the model reads next to a transcript.

    Attributes:
        id: The category id, rule id, or ``guidelines.N`` for the N-th guideline clause.
        kind: ``category``, ``rule`` or ``guideline``.
        text: The rendered clause.
        stages: The stages it applies to.
        action: The action override for this clause, if any.
        category: The category id for category clauses.
        max_severity: The tolerated severity for category clauses.
        standard: True for a category clause that keeps the taxonomy's description, so a per-category severity
            head can score it without reading the text.
    """

    id: str
    kind: ClauseKind
    text: str
    stages: frozenset[Stage]
    action: Action | None = None
    category: str | None = None
    max_severity: Severity | None = None
    standard: bool = False


@dataclass(frozen=True, slots=True)
class RenderedPolicy:
    """A policy rendered once per version: its clauses, its readable text and its hash.

    Attributes:
        policy: The policy that was rendered.
        clauses: Every clause, categories first (taxonomy order), then rules, then guideline clauses.
        text: The whole configuration as readable text for reviewers (what ``csrm-guard render`` prints).
        template_version: The template version used.
        hash: sha256 of the template hash and the rendered text; identifies the policy in logs.
    """

    policy: Policy
    clauses: tuple[Clause, ...]
    text: str
    template_version: str
    hash: str

    def for_stage(self, stage: Stage) -> tuple[Clause, ...]:
        """Return the clauses that apply to ``stage``."""
        return tuple(clause for clause in self.clauses if stage in clause.stages)


@functools.cache
def _environment() -> SandboxedEnvironment:
    loader = jinja2.FunctionLoader(_load_template)
    return SandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # output is model input and plain text, never HTML
        keep_trailing_newline=False,
        trim_blocks=False,
    )


def _load_template(name: str) -> str:
    try:
        return resources.files("csrm_guard.policy").joinpath("templates", name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TemplateError(f"template {name!r} is missing from csrm_guard/policy/templates") from exc


def _render(name: str, **variables: Any) -> str:
    try:
        return _environment().get_template(name).render(**variables).strip()
    except jinja2.TemplateError as exc:
        raise TemplateError(f"rendering {name} failed: {exc}") from exc


@functools.cache
def template_hash() -> str:
    """sha256 over the template version and every template file, in a fixed order."""
    digest = hashlib.sha256(TEMPLATE_VERSION.encode())
    for name in _TEMPLATES:
        digest.update(name.encode() + b"\0" + _load_template(name).encode("utf-8") + b"\0")
    return digest.hexdigest()


def render_category_clause(category: Category | str, rule: CategoryRule | None = None) -> str:
    """Render the clause for one standard category under ``rule``.

    Args:
        category: The category or its id.
        rule: How the policy treats it (default: not allowed at any severity).

    Returns:
        The clause text the model reads.
    """
    if isinstance(category, str):
        category = load_taxonomy().get(category)
    rule = rule or CategoryRule()
    max_severity = rule.effective_max
    return _render(
        "clause_category.j2",
        category=category,
        description=rule.description or category.description,
        max_severity=max_severity.value,
        max_rank=max_severity.rank,
        levels=[Severity.LOW, Severity.MODERATE, Severity.HIGH],
    )


def render_rule_clause(text: str) -> str:
    """Render the clause for a free-text custom rule."""
    return _render("clause_rule.j2", rule_text=text)


def render_guideline_clause(text: str) -> str:
    """Render the clause for one piece of a guidelines document."""
    return _render("clause_guideline.j2", text=text)


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def split_guidelines(document: str, *, max_chars: int = 400) -> list[str]:
    """Split a natural-language policy document into clauses.

    Paragraphs and list items become clauses; headings (short lines ending in ``:`` or starting with ``#``)
    are prefixed to the clauses under them; pieces longer than ``max_chars`` are split at sentence ends.

    Args:
        document: The guidelines text.
        max_chars: Soft cap on a clause's length.

    Returns:
        The clauses, in document order, without empty pieces.
    """
    pieces: list[str] = []
    heading = ""
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*\u2022]|\d+[.)])\s)", document):
        text = " ".join(_BULLET.sub("", line).strip() for line in block.strip().splitlines()).strip()
        if not text:
            continue
        if text.startswith("#") or (text.endswith(":") and len(text) < 80):
            heading = text.lstrip("#").strip().rstrip(":")
            continue
        pieces.extend(f"{heading}: {part}" if heading else part for part in _chunk(text, max_chars))
    return pieces


def _chunk(text: str, max_chars: int) -> list[str]:
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if chunks and len(chunks[-1]) + len(sentence) < max_chars:
            chunks[-1] += " " + sentence
        else:
            chunks.append(sentence)
    return chunks


@functools.lru_cache(maxsize=256)
def render_policy(policy: Policy) -> RenderedPolicy:
    """Render a policy into clauses and reviewer text (cached per policy hash).

    Hard-limit categories are always included, even when the policy does not list them.

    Args:
        policy: A validated policy.

    Returns:
        The rendered policy.

    Raises:
        TemplateError: When a template is missing or fails.
    """
    clauses = [*_category_clauses(policy), *_rule_clauses(policy.rules)]
    if policy.guidelines:
        clauses.extend(
            Clause(
                id=f"guidelines.{n}",
                kind="guideline",
                text=render_guideline_clause(piece),
                stages=frozenset(("input", "output")),
            )
            for n, piece in enumerate(split_guidelines(policy.guidelines), start=1)
        )
    text = _render("config.j2", policy=policy, clauses=clauses, template_version=TEMPLATE_VERSION)
    digest = hashlib.sha256(f"{template_hash()}\0{text}".encode()).hexdigest()
    return RenderedPolicy(policy, tuple(clauses), text + "\n", TEMPLATE_VERSION, digest)


def _category_clauses(policy: Policy) -> list[Clause]:
    both: frozenset[Stage] = frozenset(("input", "output"))
    clauses = []
    for category in load_taxonomy().categories:
        rule = policy.categories.get(category.id)
        if rule is None and not category.hard_limit:
            continue
        rule = rule or CategoryRule()
        if rule.allowed:
            continue
        clauses.append(
            Clause(
                id=category.id,
                kind="category",
                text=render_category_clause(category, rule),
                stages=both,
                action=rule.action,
                category=category.id,
                max_severity=rule.max_severity,
                standard=rule.description is None,
            )
        )
    return clauses


def _rule_clauses(rules: Sequence[Rule]) -> list[Clause]:
    return [
        Clause(
            id=rule.id,
            kind="rule",
            text=render_rule_clause(rule.text),
            stages=frozenset(rule.stages),
            action=rule.action,
        )
        for rule in rules
    ]


def render_transcript(messages: Messages, *, stage: Stage, response: str | None = None) -> str:
    """Render a conversation into the transcript the model reads, with the judged turn last and marked.

    For ``input`` the judged turn is the last user message (anything after it is dropped); for ``output`` it
    is ``response``, or the last assistant message when ``response`` is omitted.

    Args:
        messages: OpenAI-style ``{"role", "content"}`` mappings.
        stage: Which turn is judged.
        response: The assistant response to judge (output stage).

    Returns:
        The transcript text.

    Raises:
        InputError: When a message is malformed or there is no turn to judge.
    """
    checked = [_check_message(message, index) for index, message in enumerate(_as_list(messages))]
    if stage == "output" and response is not None:
        if not isinstance(response, str):
            raise InputError(f"must be a string, got {type(response).__name__}", location="response")
        context, judged = checked, {"role": "assistant", "content": response}
    else:
        role = "user" if stage == "input" else "assistant"
        index = next((i for i in range(len(checked) - 1, -1, -1) if checked[i]["role"] == role), None)
        if index is None:
            raise InputError(f"no {role} message to judge for the {stage} stage", location="messages")
        context, judged = checked[:index], checked[index]
    return _render("transcript.j2", context=context, judged=judged)


def _as_list(messages: Messages) -> list[Any]:
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise InputError(
            f"must be a list of {{'role', 'content'}} mappings, got {type(messages).__name__}",
            location="messages",
        )
    return list(messages)


def _check_message(message: Any, index: int) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InputError(
            f"must be a mapping with 'role' and 'content', got {type(message).__name__}", location=where
        )
    role, content = message.get("role"), message.get("content")
    if role not in _ROLES:
        raise InputError(f"role must be one of {sorted(_ROLES)}, got {role!r}", location=f"{where}.role")
    if content is None:
        content = ""  # OpenAI tool-call messages carry no content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    if not isinstance(content, str):
        raise InputError(f"must be a string, got {type(content).__name__}", location=f"{where}.content")
    return {"role": str(role), "content": content}


def render_refusal(policy: Policy, *, stage: Stage, violations: Sequence[str] = ()) -> str:
    """Render the policy's refusal template in the refusal sandbox.

    Args:
        policy: The policy whose ``refusal`` template to render.
        stage: The stage that refused.
        violations: Ids of the violated clauses.

    Returns:
        The refusal text.

    Raises:
        TemplateError: When the template is invalid or tries something the sandbox forbids.
    """
    return compile_refusal(policy.refusal).render(
        policy={"name": policy.name, "version": policy.version}, stage=stage, violations=list(violations)
    )
