"""``csrm-guard train``, ``export`` and ``eval``: the model's offline life cycle.

``train`` and ``export`` import :mod:`csrm_guard.training` (torch) inside the handler, so the CLI itself stays
torch-free; ``eval`` runs bundles with onnxruntime only.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from csrm_guard.cli import EXIT_OK

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``train``, ``export`` and ``eval`` subcommands."""
    train = subparsers.add_parser("train", help="train the CSRM from `data build` output (needs torch)")
    train.add_argument("--config", type=Path, required=True, help="YAML training config (see configs/)")
    train.set_defaults(handler=_train)

    export = subparsers.add_parser("export", help="export a checkpoint to an ONNX model bundle (needs torch)")
    export.add_argument("--checkpoint", type=Path, required=True, help="RUN/checkpoints/final.pt")
    export.add_argument(
        "--data", type=Path, required=True, help="`data build` output (dev split: gate, calibration)"
    )
    export.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    export.add_argument("--model-id", default="csrm-minilm-l6")
    export.add_argument("--model-version", default="1.0.0")
    export.add_argument("--fp32", action="store_true", help="skip int8 quantisation")
    export.add_argument(
        "--fit-policy",
        type=Path,
        default=None,
        help="policy the recommended thresholds are fitted under, at the policy level "
        "(default: policies/general-assistant/policy.yaml)",
    )
    export.add_argument(
        "--clause-thresholds",
        action="store_true",
        help="keep the clause-level thresholds as the recommended ones (no policy-level fit)",
    )
    export.set_defaults(handler=_export)

    evaluate = subparsers.add_parser("eval", help="evaluate a bundle and the baselines on the benchmarks")
    evaluate.add_argument(
        "--bundle", type=Path, default=None, help="bundle folder (default: the shipped one)"
    )
    evaluate.add_argument("--benchmark", default="all", help="benchmark name or 'all'")
    evaluate.add_argument("--data", type=Path, default=Path("data_build"), help="`data build` output")
    evaluate.add_argument("--baseline-bundle", type=Path, default=None, help="unconditioned baseline bundle")
    evaluate.add_argument("--limit", type=int, default=None, help="at most this many examples per benchmark")
    evaluate.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown report")
    evaluate.add_argument("--img", type=Path, default=Path("docs/img"), help="folder for the PNG plots")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the raw results as JSON")
    evaluate.set_defaults(handler=_eval)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _train(args: argparse.Namespace) -> int:
    from csrm_guard.training.train import load_config, train  # noqa: PLC0415 - torch only when training

    _setup_logging()
    final = train(load_config(args.config))
    print(f"checkpoint: {final}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from csrm_guard.training.export import (  # noqa: PLC0415 - torch only here
        DEFAULT_FIT_POLICY,
        ExportOptions,
        export_bundle,
    )

    _setup_logging()
    options = ExportOptions(
        out=args.out,
        data_dir=args.data,
        model_id=args.model_id,
        model_version=args.model_version,
        force_fp32=args.fp32,
        fit_policy=None if args.clause_thresholds else (args.fit_policy or DEFAULT_FIT_POLICY),
    )
    manifest = export_bundle(args.checkpoint, options)
    gate = manifest.metrics.get("dev_gate", {})
    print(f"bundle: {args.out} ({manifest.quantization}); parity gate: {gate}")
    print(f"calibration: {manifest.calibration.model_dump()}")
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from csrm_guard.evaluation.run import EvalOptions, run_evaluation  # noqa: PLC0415 - matplotlib is optional

    _setup_logging()
    options = EvalOptions(
        bundle=args.bundle,
        benchmark=args.benchmark,
        data_dir=args.data,
        baseline_bundle=args.baseline_bundle,
        limit=args.limit,
        out=args.out,
        img_dir=args.img,
        json_out=args.json,
    )
    summary = run_evaluation(options)
    print(summary)
    return EXIT_OK
