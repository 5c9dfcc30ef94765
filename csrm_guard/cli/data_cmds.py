"""``csrm-guard data``: build the training data and measure the weak severity labels.

``data build`` writes the splits, augmented sets, benchmarks and the data card; ``data severity-agreement``
compares weak severity labels with the hand-labelled sample.

The training modules are imported inside the handlers, so ``csrm-guard --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``data`` command group to the CLI."""
    parser = subparsers.add_parser("data", help="build training data and data cards")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    build = commands.add_parser("build", help="build splits, augmented sets, benchmarks and the data card")
    build.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data"),
        help="folder holding the data sets (default: ../shared/data)",
    )
    build.add_argument(
        "--out", type=Path, default=Path("data_build"), help="output folder (default: data_build)"
    )
    build.add_argument("--seed", type=int, default=13, help="build seed (default: 13)")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.add_argument(
        "--safe-taxonomy-keep",
        type=float,
        default=0.15,
        help="share of safe examples that give a severity-head row (default: 0.15)",
    )
    build.add_argument(
        "--taxonomy-negatives",
        action="store_true",
        help="label categories a harmful turn is plainly not about as severity 0 (experimental: see the model card)",
    )
    build.add_argument(
        "--hard-negative-taxonomy",
        action="store_true",
        help="every hand-written hard negative gives a severity-head row (experimental: see the model card)",
    )
    build.add_argument(
        "--scenario-foreign-rows",
        type=int,
        default=12,
        metavar="N",
        help="rows per scenario family pairing its rule with a data-set conversation, label 0 (default: 12; 0: none)",
    )
    build.set_defaults(handler=_build)

    agree = commands.add_parser(
        "severity-agreement", help="compare weak severity labels with a hand-labelled sample"
    )
    agree.add_argument(
        "--sample",
        type=Path,
        default=Path("benchmarks/severity/sample.jsonl"),
        help="hand-labelled JSONL rows with example_id, category and severity",
    )
    agree.add_argument(
        "--build-dir",
        type=Path,
        default=Path("data_build"),
        help="the data build holding examples.jsonl (default: data_build)",
    )
    agree.add_argument("--format", choices=("text", "json"), default="text")
    agree.set_defaults(handler=_agreement)


def _build(args: argparse.Namespace) -> int:
    from csrm_guard.training.build import Budget, build  # noqa: PLC0415 - keeps the CLI import light
    from csrm_guard.training.card import render_card  # noqa: PLC0415

    budget = Budget(
        safe_taxonomy_keep=args.safe_taxonomy_keep,
        taxonomy_negatives=args.taxonomy_negatives,
        hard_negative_taxonomy=args.hard_negative_taxonomy,
        scenario_foreign_rows=args.scenario_foreign_rows,
    )
    card = build(args.data_dir, args.out, seed=args.seed, budget=budget, progress=not args.no_progress)
    print(render_card(card))
    print(f"wrote {args.out}")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from csrm_guard.training.severity_sample import measure_agreement  # noqa: PLC0415

    result = measure_agreement(args.sample, args.build_dir / "examples.jsonl")
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"items: {result['n']}  exact: {result['exact']:.3f}  within one level: {result['within_one']:.3f}  "
        f"quadratic kappa: {result['kappa']:.3f}  any-severity agreement: {result['binary_accuracy']:.3f}"
    )
    print("confusion (rows = hand none/low/moderate/high, columns = weak):")
    for name, row in zip(("none", "low", "moderate", "high"), result["confusion"], strict=True):
        print(f"  {name:>8}: " + " ".join(f"{n:4d}" for n in row))
    return 0
