"""The ``csrm-guard`` command line: a thin shell over the library.

Each subcommand module exposes ``register(subparsers)``, which adds its parsers and sets ``handler`` (a function
``(argparse.Namespace) -> int``) as the parser default. Exit codes: 0 ok, 1 tests or policy failed, 2 usage error,
3 operational error (a model or file could not be used).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from csrm_guard import __version__
from csrm_guard.errors import CsrmGuardError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_OPERATIONAL", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3

# Modules that contribute subcommands, in help order. Each has register(subparsers).
_COMMAND_MODULES = (
    "csrm_guard.cli.policy_cmds",
    "csrm_guard.cli.review_cmds",
    "csrm_guard.cli.model_cmds",
    "csrm_guard.cli.train_cmds",
    "csrm_guard.cli.data_cmds",
    "csrm_guard.cli.batch_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="csrm-guard", description="Policy-as-code guardrails for LLM calls."
    )
    parser.add_argument("--version", action="version", version=f"csrm-guard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command module not written yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code or 0)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except CsrmGuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except KeyboardInterrupt:
        return 130
