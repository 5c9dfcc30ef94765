"""Find policies and their test cases on disk, OPA style, and select cases by name.

Layout (``opa test`` keeps tests beside the code they test)::

    policies/<name>/policy.yaml          a policy; may carry its own ``tests:``
    policies/<name>/policy_test.yaml     more cases for it: a top-level ``tests:`` list

A tests file may name the policy it tests with a top-level ``policy:`` key, either the policy's ``name`` or a
path relative to the tests file. Without it, ``<stem>_test.yaml`` tests the sibling ``<stem>.yaml`` when there
is one, else the sibling ``policy.yaml``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from csrm_guard.errors import PolicyValidationError
from csrm_guard.policy import Policy, PolicyTest, load_policy
from csrm_guard.policy.loader import POLICY_FILENAMES

__all__ = [
    "Discovery",
    "PolicyCase",
    "PolicySuite",
    "discover",
    "is_policy_file",
    "is_test_file",
    "load_cases",
    "select",
    "yaml_error",
]

logger = logging.getLogger(__name__)

_POLICY_NAMES = POLICY_FILENAMES
_TEST_SUFFIXES = ("_test.yaml", "_test.yml", "_test.json")
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache"})
_TEST_FILE_KEYS = frozenset({"policy", "tests"})


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One test case bound to the policy it tests.

    Attributes:
        policy: The policy under test.
        policy_path: The file the policy was loaded from.
        test: The case itself.
        file: The file the case is written in (the policy file or a tests file).
        line: 1-based line of the case in ``file``, when known.
    """

    policy: Policy
    policy_path: Path
    test: PolicyTest
    file: Path
    line: int | None = None

    @property
    def id(self) -> str:
        """``<policy name>::<case name>``, the string ``--run`` patterns are matched against."""
        return f"{self.policy.name}::{self.test.name}"

    @property
    def location(self) -> str:
        """``file:line`` of the case, for messages."""
        return f"{self.file}:{self.line}" if self.line is not None else str(self.file)


@dataclass(frozen=True, slots=True)
class PolicySuite:
    """A policy and every case found for it (inline and in tests files).

    Attributes:
        path: The policy file.
        policy: The loaded policy.
        cases: Its cases, inline cases first, then tests files in path order.
    """

    path: Path
    policy: Policy
    cases: tuple[PolicyCase, ...]


@dataclass(frozen=True, slots=True)
class Discovery:
    """Everything :func:`discover` found.

    Attributes:
        suites: One suite per policy file, in path order (policies without cases included).
    """

    suites: tuple[PolicySuite, ...]

    @property
    def cases(self) -> tuple[PolicyCase, ...]:
        """Every case of every suite."""
        return tuple(case for suite in self.suites for case in suite.cases)

    @property
    def policies(self) -> tuple[Policy, ...]:
        """Every policy found."""
        return tuple(suite.policy for suite in self.suites)


def is_test_file(path: Path) -> bool:
    """Return whether ``path`` is named like a tests file (``*_test.yaml``, ``.yml`` or ``.json``)."""
    return path.name.endswith(_TEST_SUFFIXES)


def is_policy_file(path: Path) -> bool:
    """Return whether ``path`` is named like a policy file found by walking folders (``policy.yaml`` ...)."""
    return path.name in _POLICY_NAMES


def discover(paths: Iterable[str | Path]) -> Discovery:
    """Find the policies and test cases under ``paths``.

    Folders are walked recursively for ``policy.yaml`` and ``*_test.yaml`` files; a file named explicitly is a
    tests file when named ``*_test.yaml`` and a policy file otherwise.

    Args:
        paths: Files and folders.

    Returns:
        The suites found, one per policy.

    Raises:
        PolicyValidationError: When a path does not exist, a file is invalid, a tests file's policy cannot be
            found, or two cases of one policy share a name.
    """
    policy_files: list[Path] = []
    test_files: list[tuple[Path, bool]] = []
    for path, walked in _expand(paths):
        if is_test_file(path):
            test_files.append((path, walked))
        else:
            policy_files.append(path)
    registry = _Registry()
    for path in policy_files:
        registry.load(path)
    for path, walked in test_files:
        # A tests file found in a folder brings its policy's inline cases too (``shop.yaml`` + ``shop_test.yaml``);
        # one named on its own runs only its own cases.
        registry.add_tests_file(path, inline=walked)
    return Discovery(suites=registry.suites())


def load_cases(path: str | Path) -> tuple[PolicyCase, ...]:
    """Load the cases written in one file: a tests file, or the inline ``tests:`` of a policy file.

    Args:
        path: A policy file or a tests file.

    Returns:
        The cases the file itself contains (a policy file's sibling tests files are not included).

    Raises:
        PolicyValidationError: When the file or the policy it tests is invalid or cannot be found.
    """
    registry = _Registry()
    path = Path(path)
    if is_test_file(path):
        registry.add_tests_file(path)
    else:
        registry.load(path)
    return tuple(case for suite in registry.suites() for case in suite.cases if case.file == path)


def select(cases: Sequence[PolicyCase], pattern: str | re.Pattern[str] | None) -> tuple[PolicyCase, ...]:
    """Keep the cases whose id (``<policy>::<case>``) matches ``pattern`` (``re.search``); all if ``None``."""
    if pattern is None:
        return tuple(cases)
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    return tuple(case for case in cases if regex.search(case.id))


def _expand(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """Yield each file once, with whether it was found by walking a folder."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise PolicyValidationError("no such file or folder", file=str(path))
        for found in _walk(path) if path.is_dir() else (path,):
            key = found.resolve()
            if key not in seen:
                seen.add(key)
                yield found, path.is_dir()


def _walk(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if entry.name not in _SKIP_DIRS and not entry.name.startswith("."):
                yield from _walk(entry)
        elif is_policy_file(entry) or is_test_file(entry):
            yield entry


class _Registry:
    """Policies loaded once each, and the cases attached to them."""

    def __init__(self) -> None:
        self._policies: dict[Path, Policy] = {}
        self._paths: dict[Path, Path] = {}  # resolved -> as given, for messages
        self._cases: dict[Path, list[PolicyCase]] = {}

    def load(self, path: Path, *, inline: bool = True) -> Policy:
        """Load a policy once; ``inline=False`` when it is only needed by a tests file named on its own."""
        key = path.resolve()
        if key not in self._policies:
            policy = load_policy(path)
            self._policies[key] = policy
            self._paths[key] = path
            self._cases[key] = []
            if inline:
                for index, test in enumerate(policy.tests):
                    self._attach(key, test, path, _test_lines(path).get(index))
        return self._policies[key]

    def add_tests_file(self, path: Path, *, inline: bool = False) -> None:
        data, lines = _read_tests_file(path)
        policy_path = self._policy_for(path, data.get("policy"), inline=inline)
        key = policy_path.resolve()
        for index, item in enumerate(data["tests"]):
            test = _parse_test(item, path, lines.get(index), index)
            self._attach(key, test, path, lines.get(index))

    def suites(self) -> tuple[PolicySuite, ...]:
        return tuple(
            PolicySuite(path=self._paths[key], policy=self._policies[key], cases=tuple(self._cases[key]))
            for key in sorted(self._policies, key=lambda k: str(self._paths[k]))
        )

    def _attach(self, key: Path, test: PolicyTest, file: Path, line: int | None) -> None:
        policy = self._policies[key]
        for other in self._cases[key]:
            if other.test.name == test.name:
                raise PolicyValidationError(
                    f"policy {policy.name!r} has two cases named {test.name!r} "
                    f"(the other is at {other.location})",
                    file=str(file),
                    line=line,
                    field="tests",
                )
        case = PolicyCase(policy=policy, policy_path=self._paths[key], test=test, file=file, line=line)
        self._cases[key].append(case)

    def _policy_for(self, tests_file: Path, named: object, *, inline: bool) -> Path:
        if named is not None and not isinstance(named, str):
            raise PolicyValidationError("'policy' must be a policy name or a path", file=str(tests_file))
        folder = tests_file.parent
        if named and ("/" in named or named.endswith((".yaml", ".yml", ".json"))):
            target = folder / named
            if not target.is_file():
                raise PolicyValidationError(f"policy file {named!r} not found", file=str(tests_file))
            self.load(target, inline=inline)
            return target
        stem = tests_file.name.rsplit("_test.", 1)[0]
        candidates = [folder / f"{stem}{ext}" for ext in (".yaml", ".yml", ".json")]
        candidates += [folder / name for name in _POLICY_NAMES]
        for candidate in candidates:
            if candidate.is_file() and not is_test_file(candidate):
                policy = self.load(candidate, inline=inline)
                if named and policy.name != named:
                    continue
                return candidate
        if named:
            for key, policy in self._policies.items():
                if policy.name == named:
                    return self._paths[key]
            raise PolicyValidationError(
                f"no policy named {named!r} was found for these tests", file=str(tests_file)
            )
        raise PolicyValidationError(
            f"no policy to test: expected {stem}.yaml or policy.yaml beside it, or a 'policy:' key",
            file=str(tests_file),
        )


def _read_tests_file(path: Path) -> tuple[dict[str, Any], dict[int, int]]:
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, str(path)) from exc
    if not isinstance(data, dict):
        raise PolicyValidationError(
            "a tests file must be a mapping with a 'tests:' list", file=str(path), line=1
        )
    unknown = sorted(str(key) for key in data if key not in _TEST_FILE_KEYS)
    if unknown:
        raise PolicyValidationError(
            f"unknown key {unknown[0]!r} (a tests file has 'policy' and 'tests')",
            file=str(path),
            field=unknown[0],
        )
    if not isinstance(data.get("tests"), list):
        raise PolicyValidationError("'tests' must be a list of cases", file=str(path), field="tests")
    return data, _item_lines(text)


def yaml_error(exc: yaml.YAMLError, file: str) -> PolicyValidationError:
    """Turn a PyYAML error into a :class:`PolicyValidationError` with the file, line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return PolicyValidationError(f"not valid YAML: {problem}", file=file, line=line, column=column)


def _parse_test(item: Any, path: Path, line: int | None, index: int) -> PolicyTest:
    if not isinstance(item, dict):
        raise PolicyValidationError(
            "each test must be a mapping", file=str(path), line=line, field=f"tests[{index}]"
        )
    try:
        return PolicyTest(**{str(key): value for key, value in item.items()})
    except PolicyValidationError as exc:
        located = [
            PolicyValidationError(
                problem.problem,
                file=str(path),
                line=line,
                field=f"tests[{index}].{problem.field}" if problem.field else f"tests[{index}]",
            )
            for problem in exc.problems
        ]
        first = located[0]
        raise PolicyValidationError(
            first.problem, file=first.file, line=line, field=first.field, related=tuple(located[1:])
        ) from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyValidationError(f"cannot read the file: {exc}", file=str(path)) from exc


def _test_lines(path: Path) -> dict[int, int]:
    """Lines of the inline cases of a policy file (best effort: an unreadable file has none)."""
    try:
        return _item_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def _item_lines(text: str) -> dict[int, int]:
    """Map the index of each item of the top-level ``tests:`` list to its 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "tests" and isinstance(value, yaml.SequenceNode):
            return {index: item.start_mark.line + 1 for index, item in enumerate(value.value)}
    return {}
