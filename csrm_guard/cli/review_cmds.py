"""Review subcommands: ``test`` (policy tests), ``diff`` (impact of a policy change) and ``fmt`` (formatting).

Thin shell over :mod:`csrm_guard.review` (and :mod:`csrm_guard.batch` for ``diff --engine``). Exit codes: 0 ok;
1 a test failed, no tests were found, a diff gate failed, a file needs formatting or a policy is invalid; 2 usage
error; 3 operational error (a model could not be loaded, a check could not reach a decision, or a batch run
failed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.cli._diff_batch import add_engine_arguments, engine_usage_error, with_corpus_impact
from csrm_guard.errors import DataError, PolicyError
from csrm_guard.review.diff import diff_policies, read_expected_flips
from csrm_guard.review.diff_report import format_diff
from csrm_guard.review.fmt import find_files, format_file
from csrm_guard.review.report import format_test_run
from csrm_guard.review.runner import run_policy_tests

__all__ = ["register"]

_OK, _FAILED, _USAGE, _OPERATIONAL = 0, 1, 2, 3
_DEFAULT_DIR = "policies"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``test``, ``diff`` and ``fmt`` to the ``csrm-guard`` parser."""
    _register_test(subparsers)
    _register_diff(subparsers)
    _register_fmt(subparsers)


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {value!r}: {exc}") from exc


def _register_test(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    test = subparsers.add_parser(
        "test",
        help="run the test cases written beside policies",
        description="Find policies and their tests (inline 'tests:' and sibling *_test.yaml files), run every "
        "case through the guard with the policy's own settings and report like a test runner. Exit 0 when all "
        "pass (or, marked xfail, fail as expected), 1 when any fails, passes despite its xfail marker or none is "
        "found, 2 on usage errors, 3 when a check cannot reach a decision.",
    )
    default = f"./{_DEFAULT_DIR} if it exists, else ."
    test.add_argument("paths", nargs="*", metavar="PATH", help=f"policies, tests files, folders ({default})")
    test.add_argument(
        "--run", type=_regex, metavar="REGEX", help="only cases whose '<policy>::<case>' matches"
    )
    test.add_argument("--format", choices=("text", "json", "junit"), default="text", help="output format")
    test.add_argument(
        "--output", "-o", metavar="FILE", help="write the report to FILE (text still goes to stdout)"
    )
    test.add_argument("--allow-no-tests", action="store_true", help="exit 0 when no test case is found")
    test.add_argument("--model", metavar="BUNDLE", help="model bundle folder (default: the shipped bundle)")
    test.add_argument("--verbose", "-v", action="store_true", help="show the guard's log messages")
    test.set_defaults(handler=_test)


def _register_diff(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = subparsers.add_parser(
        "diff",
        help="show what a policy change does: semantic changes and decisions that flip",
        description="Compare OLD and NEW (two policy files, or two folders of policies paired by name): list "
        "the categories, rules, actions and stage settings that changed, and replay the policies' tests plus "
        "an optional JSONL corpus through both versions to list every decision that flips. Exit 0 when the "
        "gate passes, 1 when it fails, 2 on usage errors, 3 when a check cannot reach a decision.",
    )
    diff.add_argument("old", metavar="OLD", help="the policy (file or folder) before the change")
    diff.add_argument("new", metavar="NEW", help="the policy (file or folder) after the change")
    diff.add_argument("--corpus", metavar="FILE.jsonl", help='conversations {"id","messages","response"?}')
    diff.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format")
    diff.add_argument(
        "--output", "-o", metavar="FILE", help="write the report to FILE (text still goes to stdout)"
    )
    gate = diff.add_mutually_exclusive_group()
    gate.add_argument("--fail-on-flips", action="store_true", help="exit 1 when any decision flips")
    gate.add_argument(
        "--expect-flips",
        metavar="FILE",
        help="flip ids expected to change, one per line ('<policy>::<case>'); exit 1 on any other flip, or "
        "when a listed one does not flip",
    )
    diff.add_argument("--no-replay", action="store_true", help="semantic diff only: replay nothing, no model")
    diff.add_argument("--model", metavar="BUNDLE", help="model bundle folder (default: the shipped bundle)")
    diff.add_argument("--verbose", "-v", action="store_true", help="show the guard's log messages")
    add_engine_arguments(diff)
    diff.set_defaults(handler=_diff)


def _register_fmt(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = subparsers.add_parser(
        "fmt",
        help="format policy and tests files canonically",
        description="Rewrite policy files and *_test.yaml files in canonical form: schema key order, "
        "categories in taxonomy order, two-space indentation, comments kept. With --check, change nothing and "
        "exit 1 with a diff when a file is not formatted.",
    )
    fmt.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    fmt.add_argument("--check", action="store_true", help="only report files that need formatting")
    fmt.set_defaults(handler=_fmt)


@contextlib.contextmanager
def _guard_logs(verbose: bool) -> Iterator[None]:
    """Keep per-decision log lines (e.g. "monitor: would have acted") out of reports unless asked for."""
    guard_logger = logging.getLogger("csrm_guard.guard")
    previous = guard_logger.level
    if not verbose:
        guard_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        guard_logger.setLevel(previous)


def _missing(paths: list[str]) -> int | None:
    for path in paths:
        if not Path(path).exists():
            print(f"error: {path}: no such file or folder", file=sys.stderr)
            return _USAGE
    return None


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")


def _test(args: argparse.Namespace) -> int:
    paths = args.paths or ([_DEFAULT_DIR] if Path(_DEFAULT_DIR).is_dir() else ["."])
    if (code := _missing(paths)) is not None:
        return code
    try:
        with _guard_logs(args.verbose):
            run = run_policy_tests(paths, pattern=args.run, model=args.model)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _FAILED
    _write(format_test_run(run, args.format), args.output)
    if args.output is not None and args.format != "text":
        sys.stdout.write(format_test_run(run, "text"))  # the report went to a file: keep the log readable
    if not run.results:
        if args.allow_no_tests:
            return _OK
        print("error: no policy tests found (use --allow-no-tests to accept that)", file=sys.stderr)
        return _FAILED
    if run.count("error"):
        return _OPERATIONAL
    return _OK if run.ok else _FAILED


def _diff(args: argparse.Namespace) -> int:
    if (problem := engine_usage_error(args)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return _USAGE
    if (code := _missing([args.old, args.new, *filter(None, [args.corpus, args.expect_flips])])) is not None:
        return code
    try:
        expected = read_expected_flips(args.expect_flips) if args.expect_flips else None
        with _guard_logs(args.verbose):
            report = diff_policies(
                args.old,
                args.new,
                corpus=None if args.engine else args.corpus,
                model=args.model,
                expected_flips=expected,
                replay=not args.no_replay,
            )
    except (PolicyError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _FAILED
    if args.engine:
        try:
            report = with_corpus_impact(report, args)
        except (
            DataError,
            OSError,
        ) as exc:  # the batch run failed (its outputs, the work dir); others exit 3 too
            print(f"error: {exc}", file=sys.stderr)
            return _OPERATIONAL
    _write(format_diff(report, args.format, fail_on_flips=args.fail_on_flips), args.output)
    if args.output is not None and args.format != "text":
        sys.stdout.write(format_diff(report, "text", fail_on_flips=args.fail_on_flips))
    if report.errors:
        return _OPERATIONAL
    return _OK if report.passed(fail_on_flips=args.fail_on_flips) else _FAILED


def _fmt(args: argparse.Namespace) -> int:
    if (code := _missing(args.paths)) is not None:
        return code
    status = _OK
    for path in find_files(args.paths):
        try:
            result = format_file(path)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = _FAILED
            continue
        if not result.changed:
            continue
        if args.check:
            sys.stdout.write(result.diff())
            print(f"would reformat {path}", file=sys.stderr)
            status = _FAILED
        else:
            path.write_text(result.formatted, encoding="utf-8")
            print(f"reformatted {path}", file=sys.stderr)
    return status
