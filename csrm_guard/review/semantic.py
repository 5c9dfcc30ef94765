"""The semantic diff of two policy versions: what a reviewer needs to know before reading any decision.

Changes are reported per meaning, not per line: a category allowed up to a new severity, a rule whose text or
action changed, a stage threshold that moved. Each change says whether it makes the policy stricter or laxer
when that is well defined, so a reviewer can see at a glance which way a pull request pushes enforcement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from csrm_guard._types import JSONValue
from csrm_guard.policy import Policy, Severity, load_taxonomy
from csrm_guard.policy.render import Clause, render_policy

__all__ = ["Change", "ChangeKind", "Direction", "changed_clauses", "semantic_diff"]

ChangeKind = Literal["added", "removed", "changed"]
"""Whether a part of the policy appeared, disappeared or changed."""

Direction = Literal["stricter", "laxer", ""]
"""Which way a change pushes enforcement; empty when that is not well defined (a rewritten text)."""

# Strictest first, as the guard ranks actions when several clauses are violated.
_ACTION_RANK = {"block": 0, "refuse": 1, "regenerate": 2, "best_of_n": 3, "monitor": 4}
_POLICY_SECTIONS = ("categories", "rules", "guidelines", "input", "output", "audit", "tests")


@dataclass(frozen=True, slots=True)
class Change:
    """One semantic difference between two policy versions.

    Attributes:
        path: Dotted path of what changed (``categories.violence.max_severity``, ``rules.no_competitors``).
        kind: ``added``, ``removed`` or ``changed``.
        old: The value before (``None`` when added).
        new: The value after (``None`` when removed).
        direction: ``stricter``, ``laxer``, or empty when not well defined.
    """

    path: str
    kind: ChangeKind
    old: JSONValue
    new: JSONValue
    direction: Direction = ""

    @property
    def section(self) -> str:
        """The top-level part of the policy the change is in (``categories``, ``rules``, ``input`` ...)."""
        return self.path.split(".", 1)[0]


def semantic_diff(old: Policy, new: Policy) -> tuple[Change, ...]:
    """List what changed from ``old`` to ``new``, by meaning.

    Tests are not compared: they do not change decisions (the flip diff covers their effect).

    Args:
        old: The policy before.
        new: The policy after.

    Returns:
        The changes: metadata first, then categories (taxonomy order), rules, guidelines, stage settings,
        audit.

    Example:
        >>> from csrm_guard.policy import CategoryRule
        >>> before = Policy(name="p", categories={"violence": CategoryRule(max_severity="low")})
        >>> after = Policy(name="p", categories={"violence": CategoryRule(max_severity="none")})
        >>> [(c.path, c.old, c.new, c.direction) for c in semantic_diff(before, after)]
        [('categories.violence.max_severity', 'low', 'none', 'stricter')]

    .. versionadded:: 0.1
    """
    a = old.model_dump(mode="json", exclude={"tests"})
    b = new.model_dump(mode="json", exclude={"tests"})
    changes: list[Change] = []
    for key in a:
        if key not in _POLICY_SECTIONS and a[key] != b[key]:
            changes.append(Change(key, "changed", a[key], b[key]))
    changes += _categories(a["categories"], b["categories"])
    changes += _keyed(
        "rules", {r["id"]: r for r in a["rules"]}, {r["id"]: r for r in b["rules"]}, _rule_field
    )
    changes += _guidelines(a["guidelines"], b["guidelines"])
    for stage in ("input", "output"):
        changes += _fields(stage, a[stage], b[stage], _stage_field)
    changes += _fields("audit", a["audit"], b["audit"], _audit_field)
    return tuple(changes)


def changed_clauses(old: Policy, new: Policy) -> frozenset[str]:
    """Ids of the rendered clauses that differ between the versions (added, removed, or rewritten)."""
    before = {clause.id: _clause_key(clause) for clause in render_policy(old).clauses}
    after = {clause.id: _clause_key(clause) for clause in render_policy(new).clauses}
    return frozenset(cid for cid in before.keys() | after.keys() if before.get(cid) != after.get(cid))


def _clause_key(clause: Clause) -> tuple[object, ...]:
    return (clause.text, clause.action, tuple(sorted(clause.stages)))


FieldRule = Callable[[str, Any, Any], "Direction"]


def _fields(prefix: str, a: Mapping[str, Any], b: Mapping[str, Any], rule: FieldRule) -> list[Change]:
    return [
        Change(f"{prefix}.{key}", "changed", a.get(key), b.get(key), rule(key, a.get(key), b.get(key)))
        for key in dict.fromkeys([*a, *b])
        if a.get(key) != b.get(key)
    ]


def _keyed(prefix: str, a: Mapping[str, Any], b: Mapping[str, Any], rule: FieldRule) -> list[Change]:
    changes: list[Change] = []
    for key in dict.fromkeys([*a, *b]):
        if key not in b:
            changes.append(Change(f"{prefix}.{key}", "removed", a[key], None, "laxer"))
        elif key not in a:
            changes.append(Change(f"{prefix}.{key}", "added", None, b[key], "stricter"))
        else:
            changes += _fields(f"{prefix}.{key}", a[key], b[key], rule)
    return changes


def _categories(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    order = {cid: index for index, cid in enumerate(load_taxonomy().ids)}
    ordered = sorted(a.keys() | b.keys(), key=lambda cid: order.get(cid, len(order)))
    changes: list[Change] = []
    for cid in ordered:
        if cid not in b:
            # An omitted hard limit still applies, so dropping it changes nothing in practice.
            laxer: Direction = "" if load_taxonomy().get(cid).hard_limit else "laxer"
            changes.append(Change(f"categories.{cid}", "removed", a[cid], None, laxer))
        elif cid not in a:
            changes.append(Change(f"categories.{cid}", "added", None, b[cid], "stricter"))
        else:
            changes += _category_fields(cid, a[cid], b[cid])
    return changes


def _category_fields(cid: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    changes = _fields(f"categories.{cid}", a, b, _category_field)
    before, after = _effective(a), _effective(b)
    if before != after and not any(c.path.endswith(".max_severity") for c in changes):
        # "allowed" flipped without max_severity changing: say what the tolerated level became.
        direction: Direction = "stricter" if after < before else "laxer"
        changes = [
            Change(c.path, c.kind, c.old, c.new, direction) if c.path.endswith(".allowed") else c
            for c in changes
        ]
    return changes


def _effective(rule: Mapping[str, Any]) -> Severity:
    return Severity.HIGH if rule.get("allowed") else Severity(rule.get("max_severity", "none"))


def _category_field(key: str, old: Any, new: Any) -> Direction:
    if key == "max_severity":
        return "stricter" if Severity(new) < Severity(old) else "laxer"
    if key == "allowed":
        return "laxer" if new else "stricter"
    if key == "action":
        return _action_direction(old, new)
    return ""


def _rule_field(key: str, old: Any, new: Any) -> Direction:
    if key == "stages":
        return "stricter" if set(new) > set(old) else ("laxer" if set(new) < set(old) else "")
    return _action_direction(old, new) if key == "action" else ""


def _stage_field(key: str, old: Any, new: Any) -> Direction:
    if key == "threshold" and old is not None and new is not None:
        return "stricter" if new < old else "laxer"
    if key == "enabled":
        return "stricter" if new else "laxer"
    if key == "action":
        return _action_direction(old, new)
    if key == "fail":
        return "stricter" if new == "closed" else "laxer"
    return ""


def _audit_field(key: str, old: Any, new: Any) -> Direction:
    return ""


def _action_direction(old: Any, new: Any) -> Direction:
    # An override set to or from None falls back to the stage's action, which this comparison cannot see.
    if old is None or new is None or _ACTION_RANK[old] == _ACTION_RANK[new]:
        return ""
    return "stricter" if _ACTION_RANK[new] < _ACTION_RANK[old] else "laxer"


def _guidelines(a: str | None, b: str | None) -> list[Change]:
    if a == b:
        return []
    if a is None:
        return [Change("guidelines", "added", None, b, "stricter")]
    if b is None:
        return [Change("guidelines", "removed", a, None, "laxer")]
    return [Change("guidelines", "changed", a, b)]
