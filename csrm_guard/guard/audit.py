"""Audit records: one JSON line per decision, built through a processor chain into a sink.

A :class:`Decision` becomes a :class:`DecisionRecord` (a plain dict), passes through processors, each
``(record) -> record`` (by default: redact, then hash, then drop raw text unless it was asked for), is
serialized to one JSON line and handed to a sink (a JSONL file, a logger or any callable). Keeping each step a
small function makes redaction testable on its own, as in structlog's processor chains.

Raw conversation text is only kept when the policy's ``audit.include_text`` is set or the caller asks for it
(``include_text=True``); the policy's ``audit.redact`` patterns are applied to it first. The sha256 of the
(redacted) text is always recorded, so records can be correlated without storing text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

from csrm_guard._types import Messages
from csrm_guard.guard._core import Decision
from csrm_guard.policy.schema import AuditSettings

__all__ = [
    "AuditLog",
    "AuditSink",
    "CallableSink",
    "DecisionRecord",
    "JsonlSink",
    "LoggerSink",
    "Processor",
    "add_listener",
    "drop_text",
    "hash_text",
    "make_record",
    "notify",
    "redact_text",
    "remove_listener",
    "serialize",
]

logger = logging.getLogger(__name__)

DecisionRecord: TypeAlias = dict[str, Any]
"""One audit record: JSON-ready data describing a decision (see ``docs/logging.md`` for the fields)."""

Processor: TypeAlias = Callable[[DecisionRecord], DecisionRecord]
"""A step of the chain: takes a record, returns it (changed or not)."""

_TEXT_FIELDS = ("messages", "response")
_REDACTED = "[REDACTED]"
_KEEP_TEXT = "_keep_text"

# Decisions are also handed to in-process listeners (``csrm_guard.testing.capture_decisions`` uses this).
_listeners: list[Callable[[Decision], None]] = []
_listeners_lock = threading.Lock()


def make_record(
    decision: Decision,
    *,
    messages: Messages | None = None,
    response: str | None = None,
    keep_text: bool = False,
) -> DecisionRecord:
    """Build the audit record of ``decision``; text fields are included for the processors to redact or drop.

    Args:
        decision: The decision to record.
        messages: The checked conversation.
        response: The checked response (output stage).
        keep_text: Whether the raw text may stay in the final record.

    Returns:
        The record, before processing.
    """
    record: DecisionRecord = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "request_id": decision.request_id,
        "stage": decision.stage,
        "outcome": decision.outcome,
        "allowed": decision.allowed,
        "violation_probability": decision.violation_probability,
        "reward": decision.reward,
        "threshold": decision.threshold,
        "violations": [violation.id for violation in decision.violations],
        "scores": decision.probabilities,
        "latency_ms": round(decision.latency_ms, 3),
        "policy": {
            "name": decision.policy_name,
            "version": decision.policy_version,
            "hash": decision.policy_hash,
        },
        "model": {"id": decision.model_id},
        "error": decision.error,
        _KEEP_TEXT: keep_text,
    }
    if messages is not None:
        record["messages"] = [
            {"role": str(m.get("role")), "content": str(m.get("content"))} for m in messages
        ]
    if response is not None:
        record["response"] = response
    return record


def redact_text(patterns: Sequence[str]) -> Processor:
    """Return a processor replacing every match of ``patterns`` in the text fields with ``[REDACTED]``.

    Raises:
        ValueError: When a pattern is not a valid regular expression (named in the message).
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"audit.redact pattern {pattern!r} is invalid: {exc}") from exc

    def redact(text: str) -> str:
        for regex in compiled:
            text = regex.sub(_REDACTED, text)
        return text

    def process(record: DecisionRecord) -> DecisionRecord:
        if "messages" in record:
            record["messages"] = [{**m, "content": redact(m["content"])} for m in record["messages"]]
        if "response" in record:
            record["response"] = redact(record["response"])
        return record

    return process


def hash_text(record: DecisionRecord) -> DecisionRecord:
    """Add ``text_sha256``: the sha256 of the (already redacted) text fields, when there are any."""
    if any(field in record for field in _TEXT_FIELDS):
        payload = json.dumps(
            [record.get(field) for field in _TEXT_FIELDS], ensure_ascii=False, sort_keys=True
        )
        record["text_sha256"] = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return record


def drop_text(record: DecisionRecord) -> DecisionRecord:
    """Remove the raw text fields unless the record was allowed to keep them."""
    if not record.pop(_KEEP_TEXT, False):
        for field in _TEXT_FIELDS:
            record.pop(field, None)
    return record


def serialize(record: DecisionRecord) -> str:
    """Render a record as one compact JSON line (no trailing newline)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


@runtime_checkable
class AuditSink(Protocol):
    """Where audit lines go."""

    def emit(self, record: DecisionRecord, line: str) -> None:
        """Write one processed record; ``line`` is its JSON serialization."""
        ...


class JsonlSink:
    """Append one JSON line per decision to a file (thread-safe, flushed after each line).

    Args:
        path: The file; its folder is created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def emit(self, record: DecisionRecord, line: str) -> None:
        """Append ``line`` and flush."""
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class LoggerSink:
    """Send each line to a :mod:`logging` logger (``csrm_guard.audit`` at INFO by default).

    Args:
        name: The logger name.
        level: The logging level of the records.
    """

    def __init__(self, name: str = "csrm_guard.audit", level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(name)
        self.level = level

    def emit(self, record: DecisionRecord, line: str) -> None:
        """Log ``line``; the record is attached as ``extra={"audit": record}``."""
        self.logger.log(self.level, line, extra={"audit": record})


class CallableSink:
    """Hand each processed record (a dict) to a function, e.g. to ship it to a queue.

    Args:
        fn: Called with the record; its return value is ignored.
    """

    def __init__(self, fn: Callable[[DecisionRecord], object]) -> None:
        self.fn = fn

    def emit(self, record: DecisionRecord, line: str) -> None:
        """Call the function with the record."""
        self.fn(record)


class AuditLog:
    """The processor chain plus a sink.

    Args:
        sink: Where lines go: an :class:`AuditSink`, a path (JSONL file) or a callable (receives each record).
        processors: The chain; default ``[redact_text(settings.redact), hash_text, drop_text]``.
        settings: The policy's audit settings (text inclusion and redaction); set by the Guard.
        include_text: Keep raw text in every record, whatever the policy says (``None``: follow the policy).

    Example:
        >>> log = AuditLog(lambda record: None)
        >>> isinstance(log.sink, CallableSink)
        True

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        sink: AuditSink | str | os.PathLike[str] | Callable[[DecisionRecord], object],
        *,
        processors: Iterable[Processor] | None = None,
        settings: AuditSettings | None = None,
        include_text: bool | None = None,
    ) -> None:
        self.sink = _as_sink(sink)
        self.settings = settings or AuditSettings()
        self.include_text = include_text
        self._custom = processors is not None
        self.processors = list(processors) if processors is not None else self._default_chain()

    def _default_chain(self) -> list[Processor]:
        return [redact_text(self.settings.redact), hash_text, drop_text]

    def with_settings(self, settings: AuditSettings) -> AuditLog:
        """Return a log with this sink (and custom processors) configured for a policy's settings."""
        processors = self.processors if self._custom else None
        return AuditLog(self.sink, processors=processors, settings=settings, include_text=self.include_text)

    def record(
        self,
        decision: Decision,
        *,
        messages: Messages | None = None,
        response: str | None = None,
        include_text: bool | None = None,
    ) -> DecisionRecord:
        """Build, process and emit the record of ``decision``.

        Args:
            decision: The decision.
            messages: The checked conversation (kept only when text is included).
            response: The checked response (kept only when text is included).
            include_text: Per-call override of text inclusion.

        Returns:
            The processed record that was emitted.
        """
        keep = next(v for v in (include_text, self.include_text, self.settings.include_text) if v is not None)
        record = make_record(decision, messages=messages, response=response, keep_text=keep)
        for processor in self.processors:
            record = processor(record)
        record.pop(_KEEP_TEXT, None)
        self.sink.emit(record, serialize(record))
        return record

    def close(self) -> None:
        """Close the sink when it has a ``close`` method."""
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()


def _as_sink(sink: object) -> AuditSink:
    if isinstance(sink, str | os.PathLike):
        return JsonlSink(sink)
    if isinstance(sink, AuditSink):
        return sink
    if callable(sink):
        return CallableSink(sink)
    raise TypeError(
        f"audit sink must be a path, a callable or have emit(record, line), got {type(sink).__name__}"
    )


def add_listener(listener: Callable[[Decision], None]) -> None:
    """Register an in-process decision listener (used by :func:`csrm_guard.testing.capture_decisions`)."""
    with _listeners_lock:
        _listeners.append(listener)


def remove_listener(listener: Callable[[Decision], None]) -> None:
    """Unregister a listener added with :func:`add_listener`."""
    with _listeners_lock:
        _listeners.remove(listener)


def notify(decision: Decision) -> None:
    """Hand ``decision`` to every registered listener."""
    with _listeners_lock:
        listeners = tuple(_listeners)
    for listener in listeners:
        listener(decision)
