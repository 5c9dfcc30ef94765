"""Policy subcommands: ``validate``, ``render`` and ``schema``.

Thin shell: each command calls :mod:`csrm_guard.policy` and formats the result.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from csrm_guard.errors import PolicyError, PolicyValidationError
from csrm_guard.policy import load_policy, render_policy
from csrm_guard.policy.loader import find_policy_files
from csrm_guard.policy.render import render_refusal
from csrm_guard.policy.schema import policy_json_schema

__all__ = ["register"]

_OK, _FAILED, _USAGE = 0, 1, 2
_GOLDEN_NAME = "rendered.txt"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate``, ``render`` and ``schema`` to the ``csrm-guard`` parser."""
    validate = subparsers.add_parser(
        "validate",
        help="check policy files and folders",
        description="Load, validate and render each policy; folders are searched for policy.yaml. "
        "Exit 0 when all are valid, 1 when any is invalid, 2 on usage errors.",
    )
    validate.add_argument(
        "paths", nargs="+", metavar="PATH", help="policy file or folder (searched recursively)"
    )
    validate.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    validate.set_defaults(handler=_validate)

    render = subparsers.add_parser(
        "render",
        help="show the text the model reads for a policy",
        description="Print the rendered policy (its clauses as the model reads them). With --check, compare "
        "it with a golden file and exit 1 with a diff when they differ.",
    )
    render.add_argument("policy", metavar="POLICY", help="policy file or folder")
    golden = render.add_mutually_exclusive_group()
    golden.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="GOLDEN",
        help=f"compare with GOLDEN (default: {_GOLDEN_NAME} beside the policy)",
    )
    golden.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="GOLDEN",
        help=f"write the rendering to GOLDEN (default: {_GOLDEN_NAME} beside the policy)",
    )
    render.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    render.set_defaults(handler=_render)

    schema = subparsers.add_parser(
        "schema", help="print the JSON Schema of policy files", description="Print the policy JSON Schema."
    )
    schema.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    schema.set_defaults(handler=_schema)


def _check_one(path: Path) -> dict[str, Any]:
    try:
        policy = load_policy(path)
        rendered = render_policy(policy)
        render_refusal(policy, stage="output", violations=["example"])
    except PolicyValidationError as exc:
        return {"path": str(path), "ok": False, "errors": [_problem_json(p) for p in exc.problems]}
    except PolicyError as exc:
        problem = {"file": str(path), "line": None, "column": None, "field": None, "problem": str(exc)}
        return {"path": str(path), "ok": False, "errors": [problem]}
    return {
        "path": str(path),
        "ok": True,
        "name": policy.name,
        "version": policy.version,
        "hash": policy.hash,
        "rendered_hash": rendered.hash,
        "clauses": len(rendered.clauses),
        "tests": len(policy.tests),
    }


def _problem_json(problem: PolicyValidationError) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "field": problem.field,
        "problem": problem.problem,
    }


def _validate(args: argparse.Namespace) -> int:
    try:
        files = find_policy_files(args.paths)
    except FileNotFoundError as exc:
        print(f"error: no such file or folder: {exc}", file=sys.stderr)
        return _USAGE
    if not files:
        print(f"error: no policy files found under {' '.join(args.paths)}", file=sys.stderr)
        return _FAILED
    results = [_check_one(path) for path in files]
    invalid = sum(not result["ok"] for result in results)
    if args.format == "json":
        summary = {"ok": invalid == 0, "checked": len(results), "invalid": invalid, "results": results}
        print(json.dumps(summary, indent=2))
    else:
        for result in results:
            _print_result(result)
        print(f"{len(results)} checked: {len(results) - invalid} valid, {invalid} invalid")
    return _FAILED if invalid else _OK


def _print_result(result: dict[str, Any]) -> None:
    if result["ok"]:
        print(
            f"ok    {result['path']}  {result['name']} v{result['version']}  {result['clauses']} clauses  "
            f"{result['tests']} tests  {result['hash'][:12]}"
        )
        return
    print(f"FAIL  {result['path']}")
    for error in result["errors"]:
        where = ":".join(
            str(part) for part in (error["file"], error["line"], error["column"]) if part is not None
        )
        field = f" {error['field']}:" if error["field"] else ""
        print(f"  {where}:{field} {error['problem']}")


def _golden_path(policy: str, given: str) -> Path:
    if given:
        return Path(given)
    path = Path(policy)
    return (path if path.is_dir() else path.parent) / _GOLDEN_NAME


def _render(args: argparse.Namespace) -> int:
    try:
        rendered = render_policy(load_policy(args.policy))
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _FAILED
    text = rendered.text
    if args.format == "json":
        text = json.dumps(_rendered_json(rendered), indent=2) + "\n"
    if args.write is not None:
        golden = _golden_path(args.policy, args.write)
        golden.write_text(text, encoding="utf-8")
        print(f"wrote {golden}")
        return _OK
    if args.check is not None:
        return _check_golden(text, _golden_path(args.policy, args.check), args.policy)
    sys.stdout.write(text)
    return _OK


def _rendered_json(rendered: Any) -> dict[str, Any]:
    return {
        "name": rendered.policy.name,
        "version": rendered.policy.version,
        "hash": rendered.hash,
        "policy_hash": rendered.policy.hash,
        "template_version": rendered.template_version,
        "clauses": [
            {
                "id": clause.id,
                "kind": clause.kind,
                "stages": sorted(clause.stages),
                "action": clause.action.value if clause.action else None,
                "category": clause.category,
                "max_severity": clause.max_severity.value if clause.max_severity else None,
                "standard": clause.standard,
                "text": clause.text,
            }
            for clause in rendered.clauses
        ],
    }


def _check_golden(text: str, golden: Path, policy: str) -> int:
    try:
        expected = golden.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read golden file {golden}: {exc.strerror or exc}", file=sys.stderr)
        print(f"hint: create it with: csrm-guard render {policy} --write {golden}", file=sys.stderr)
        return _FAILED
    if expected == text:
        print(f"ok    {golden} matches the rendering")
        return _OK
    diff = difflib.unified_diff(
        expected.splitlines(keepends=True), text.splitlines(keepends=True), str(golden), "rendered"
    )
    sys.stdout.writelines(diff)
    print(f"error: {golden} differs from the rendering of {policy}", file=sys.stderr)
    print(f"hint: review the diff, then update it with: csrm-guard render {policy} --write", file=sys.stderr)
    return _FAILED


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return _OK
