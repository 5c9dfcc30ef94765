"""The sandbox for the one user-written template: a policy's refusal message.

Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` already blocks attribute access to internals
(``__class__``, ``__globals__``, ...). A refusal message needs far less than Jinja offers, so the template is
also checked before it is compiled: only text, ``{{ ... }}`` output, ``if`` and single-level ``for`` over the
known variables, attribute and item access, comparisons and a short list of filters. No calls, no assignments,
no macros, no includes, no arithmetic that can blow up (``*``, ``**``, ``%``), and the output is capped, so a
template can neither escape nor exhaust the process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from csrm_guard.errors import TemplateError

__all__ = ["REFUSAL_VARIABLES", "RefusalTemplate", "compile_refusal"]

REFUSAL_VARIABLES = frozenset({"policy", "stage", "violations"})
"""The variables a refusal template may use."""

_MAX_OUTPUT = 8_000
_FILTERS = frozenset(
    {"capitalize", "count", "d", "default", "first", "join", "last", "length", "lower", "sort", "title"}
    | {"trim", "unique", "upper", "wordcount"}
)
_EXPRESSIONS = (
    nodes.Name,
    nodes.Const,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
)
_ALLOWED = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.If,
    nodes.For,
    nodes.Or,
    nodes.Not,
    nodes.CondExpr,
    nodes.Concat,
    nodes.List,
    nodes.Tuple,
    nodes.Add,
    nodes.Filter,
    nodes.Test,
    nodes.Slice,
    nodes.Keyword,
    *_EXPRESSIONS,
)


@functools.cache
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True, slots=True)
class RefusalTemplate:
    """A checked, compiled refusal template."""

    template: jinja2.Template

    def render(self, **variables: Any) -> str:
        """Render with ``policy``, ``stage`` and ``violations``.

        Raises:
            TemplateError: When rendering fails or the output is too long.
        """
        try:
            text = self.template.render(**variables).strip()
        except jinja2.TemplateError as exc:  # SecurityError and UndefinedError included
            raise TemplateError(f"refusal template failed: {exc}") from exc
        except (TypeError, ValueError, LookupError, ArithmeticError) as exc:
            raise TemplateError(f"refusal template failed: {type(exc).__name__}: {exc}") from exc
        if len(text) > _MAX_OUTPUT:
            raise TemplateError(f"refusal template produced more than {_MAX_OUTPUT} characters")
        return text


@functools.lru_cache(maxsize=256)
def compile_refusal(source: str) -> RefusalTemplate:
    """Check and compile a refusal template.

    Args:
        source: The template text.

    Returns:
        The compiled template.

    Raises:
        TemplateError: When the template is invalid or uses something the refusal sandbox does not allow.
    """
    environment = _environment()
    try:
        tree = environment.parse(source)
        _check(tree)
        unknown = sorted(meta.find_undeclared_variables(tree) - REFUSAL_VARIABLES)
        if unknown:
            allowed = ", ".join(sorted(REFUSAL_VARIABLES))
            raise TemplateError(
                f"refusal template uses unknown variable(s) {', '.join(unknown)}; use {allowed}"
            )
        return RefusalTemplate(environment.from_string(tree))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"refusal template is invalid (line {exc.lineno}): {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"refusal template is invalid: {exc}") from exc
    except RecursionError as exc:
        raise TemplateError("refusal template is nested too deeply") from exc


def _check(tree: nodes.Node) -> None:
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, loops = stack.pop()
        if not isinstance(node, _ALLOWED):
            raise TemplateError(f"refusal templates may not use {_describe(node)}")
        if isinstance(node, nodes.Filter) and node.name not in _FILTERS:
            raise TemplateError(f"refusal templates may not use the filter {node.name!r}")
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise TemplateError(f"refusal templates may not read the attribute {node.attr!r}")
        key = node.arg if isinstance(node, nodes.Getitem) else None
        if isinstance(key, nodes.Const) and isinstance(key.value, str) and key.value.startswith("_"):
            raise TemplateError(f"refusal templates may not read the item {key.value!r}")
        if isinstance(node, nodes.For):
            loops += 1
            if loops > 1:
                raise TemplateError("refusal templates may not nest loops")
        stack.extend((child, loops) for child in node.iter_child_nodes())


def _describe(node: nodes.Node) -> str:
    names = {
        nodes.Call: "function or method calls",
        nodes.Assign: "{% set %}",
        nodes.AssignBlock: "{% set %}",
        nodes.Macro: "macros",
        nodes.Include: "{% include %}",
        nodes.Import: "{% import %}",
        nodes.FromImport: "{% import %}",
        nodes.Extends: "{% extends %}",
        nodes.Mul: "the '*' operator",
        nodes.Pow: "the '**' operator",
        nodes.Mod: "the '%' operator",
    }
    return names.get(type(node), f"{type(node).__name__} expressions")
