"""The csrm_guard exception tree.

Every exception the library raises on purpose derives from :class:`CsrmGuardError`::

    CsrmGuardError
    ├── PolicyError                 configuration time: a policy cannot be loaded or rendered
    │   ├── PolicyValidationError   a field is wrong; carries file, line, column and field path
    │   └── TemplateError           a template is missing, broken, or a render failed
    ├── ModelError                  a model bundle cannot be used
    │   ├── BundleError             missing file, bad manifest, incompatible version
    │   └── BundleIntegrityError    a file's sha256 differs from the manifest
    ├── CheckError                  no decision could be reached (fail-open/closed applies to this branch only)
    │   ├── ScorerError             the scorer raised or returned something unusable (NaN, wrong shape)
    │   └── ScorerTimeout           the scorer did not answer within the stage's timeout
    ├── ViolationError              a decision was reached and it blocks; carries ``.decision``
    ├── InputError                  the messages or response handed to a check are malformed (also a ValueError)
    ├── DataError                   training or evaluation data is malformed; carries the source and row
    └── MissingDependencyError      an optional extra is not installed (also an ``ImportError``)

"Could not decide" (:class:`CheckError`) and "decided to block" (:class:`ViolationError`) are separate branches so
that fail-open handling, which catches only :class:`CheckError`, can never swallow a violation.

This module imports nothing from ``csrm_guard`` so that every other module can import it without cycles.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BundleError",
    "BundleIntegrityError",
    "CheckError",
    "CsrmGuardError",
    "DataError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "PolicyError",
    "PolicyValidationError",
    "ScorerError",
    "ScorerTimeout",
    "TemplateError",
    "ViolationError",
]


class CsrmGuardError(Exception):
    """Root of every exception raised on purpose by csrm_guard."""


class PolicyError(CsrmGuardError):
    """A policy could not be loaded, validated or rendered."""


class PolicyValidationError(PolicyError):
    """A policy file or object is invalid.

    Attributes:
        file: The file the problem is in, or ``None`` for a policy built in Python.
        line: 1-based line of the offending node, when known.
        column: 1-based column of the offending node, when known.
        field: Dotted path of the offending field (``categories.violence.max_severity``), when known.
        problem: The message without the location prefix.
        related: Further problems found in the same policy, each with its own location (the message lists
            them after the first).

    .. versionchanged:: 0.1 ``related`` lists every further problem found in the same pass.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        related: tuple[PolicyValidationError, ...] = (),
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.related = related
        super().__init__("\n".join([self.location_text(), *(str(other) for other in related)]))

    @property
    def problems(self) -> tuple[PolicyValidationError, ...]:
        """This problem followed by the related ones."""
        return (self, *self.related)

    def location_text(self) -> str:
        """Return ``file:line:column: field: problem`` for this problem alone."""
        where = self.file or "<policy>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.problem}"


class TemplateError(PolicyError):
    """A template is missing or broken, or rendering a policy or transcript failed."""


class ModelError(CsrmGuardError):
    """A model bundle cannot be used."""


class BundleError(ModelError):
    """A bundle is missing a file, has an invalid manifest, or is incompatible with this package.

    Attributes:
        path: The bundle folder or file concerned.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class BundleIntegrityError(BundleError):
    """A bundle file's sha256 differs from the one recorded in its manifest."""


class CheckError(CsrmGuardError):
    """No decision could be reached; the stage's fail mode (open or closed) decides what happens."""


class ScorerError(CheckError):
    """The scorer raised, or returned values that cannot be used (NaN, infinite, wrong shape)."""


class ScorerTimeout(CheckError):  # noqa: N818 - the name is part of the documented tree
    """The scorer did not answer within the stage's timeout."""


class ViolationError(CsrmGuardError):
    """A check reached a decision and the policy's action is to block.

    Attributes:
        decision: The :class:`csrm_guard.Decision` that blocked.
    """

    def __init__(self, decision: Any, message: str | None = None) -> None:
        self.decision = decision
        super().__init__(message or f"blocked by policy: {decision!r}")


class InputError(CsrmGuardError, ValueError):
    """The conversation or response given to a check is malformed (wrong type, missing role, no turn to judge).

    Attributes:
        location: Where in the input the problem is, e.g. ``messages[3].content``.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class DataError(CsrmGuardError):
    """Training or evaluation data is malformed.

    Attributes:
        source: The file or data set concerned.
        row: The 1-based row or line number, when known.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None) -> None:
        self.source = source
        self.row = row
        where = f"{source}:{row}: " if source and row else (f"{source}: " if source else "")
        super().__init__(f"{where}{message}")


class MissingDependencyError(CsrmGuardError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""
