"""Property-based tests: whatever bytes a policy file holds, loading gives a Policy or a located PolicyError.

Nothing may crash with a foreign exception, hang, or execute code. Kept to a few seconds in total.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csrm_guard import Policy
from csrm_guard.errors import PolicyError, PolicyValidationError
from csrm_guard.policy.loader import load_policy_text

_EXAMPLES = sorted((Path(__file__).parents[2] / "policies").glob("*/policy.yaml"))
_SEEDS = [path.read_text(encoding="utf-8") for path in _EXAMPLES if "extends" not in path.read_text("utf-8")]
_SEEDS = _SEEDS or ["name: seed\ncategories:\n  violence: {max_severity: low}\n"]
_MARKER = Path("/tmp/csrm-guard-fuzz-executed")  # the file a payload in _TOKENS would create
_TOKENS = [
    ":",
    "- ",
    "  ",
    "\t",
    "\n",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!python/object/apply:os.system ['touch /tmp/csrm-guard-fuzz-executed']",
    "!!binary aGk=",
    "!!set {a}",
    "{{ 7*7 }}",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "#",
    "? ",
    "null",
    "~",
    "1e999",
    "9" * 5000,
    "\x00",
    "\ufeff",
    "\u202e",
    "categories:",
    "sexual_minors: {allowed: true}",
    "max_severity: extreme",
    "extends: ../../../etc/passwd",
]
_FAST = settings(
    max_examples=60,
    deadline=None,  # a correctness property: timing on a shared CI machine is not what is tested
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)


def _outcome(data: str | bytes, fmt: str = "yaml") -> Policy | PolicyError:
    """Load ``data``; return the policy or the (checked) error."""
    try:
        policy = load_policy_text(data, source="fuzz.yaml", format=fmt, base_dir="/nonexistent")  # type: ignore[arg-type]
    except PolicyValidationError as exc:
        for problem in exc.problems:
            assert problem.file is not None
            assert problem.problem
            if "larger than" not in problem.problem:  # the only whole-file problem without a line
                assert problem.line is not None, str(problem)
                assert problem.line >= 1
        return exc
    except PolicyError as exc:  # no other subclass is expected, but it would still be a documented error
        return exc
    assert isinstance(policy, Policy)
    assert not _MARKER.exists()
    return policy


@_FAST
@given(st.binary(max_size=400))
def test_random_bytes(data):
    """Arbitrary bytes load or fail with a located error."""
    _outcome(data)


@_FAST
@given(st.text(max_size=400))
def test_random_text(text):
    """Arbitrary text, as YAML and as JSON, loads or fails with a located error."""
    _outcome(text)
    _outcome(text, "json")


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "indent"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(_TOKENS) | st.text(max_size=8)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "duplicate":
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, max(len(lines) - 1, 0)))
            text = "".join(lines[: index + 1] + lines[index:])
        else:
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, max(len(lines) - 1, 0)))
            lines[index:index] = [" " * draw(st.integers(1, 3))]
            text = "".join(lines)
    return text


@_FAST
@given(_mutated())
def test_mutated_example_policies(text):
    """Example policies with random insertions, deletions, duplicated lines and re-indentation never crash."""
    _outcome(text)


_KEY_NAMES = (
    "name version categories rules input output tests violence hate id text stages action max_severity"
)
_KEYS = st.sampled_from(
    [*_KEY_NAMES.split(), "allowed", "threshold", "messages", "role", "content", "expect", "x"]
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)


@_FAST
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_wrong_types(data):
    """Well-formed documents with wrong types and shapes give located validation errors, as YAML and JSON."""
    _outcome(yaml.safe_dump(data))
    _outcome(json.dumps(data, allow_nan=True), "json")


@_FAST
@given(st.integers(1, 400), st.sampled_from(["[", "{a: ", "- ", "a:\n  "]))
def test_deep_nesting(depth, opener):
    """Deeply nested documents are refused or loaded, never a RecursionError."""
    if opener.startswith("a:"):
        text = "".join("  " * level + f"k{level}:\n" for level in range(depth)) + "  " * depth + "v\n"
    elif opener == "- ":
        text = "".join("  " * level + "-\n" for level in range(depth)) + "  " * depth + "x\n"
    else:
        text = opener * depth
    _outcome("name: n\ndescription:\n" + "\n".join("  " + line for line in text.splitlines()) + "\n")
    _outcome(text)


@settings(_FAST, max_examples=15)
@given(st.integers(2, 12), st.integers(2, 9))
def test_alias_expansion(width, depth):
    """Anchor/alias trees of any width and depth either fit the budget or are refused."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * width)}]" for n in range(1, depth)]
    result = _outcome("\n".join(lines) + "\n")
    assert isinstance(result, PolicyError)  # not a policy either way: unknown keys or too many values


def test_huge_document_is_refused_quickly():
    """A document over the size cap is refused without parsing it."""
    result = _outcome("name: x\ndescription: '" + "a" * (3 * 1024 * 1024) + "'\n")
    assert isinstance(result, PolicyValidationError)
    assert "larger than" in result.problem
