"""Model subcommands: ``check`` (score one conversation) and ``bench`` (latency against the ONNX floor).

Thin shell: ``check`` builds a :class:`~csrm_guard.guard.Guard` and prints its decision; ``bench`` runs
:func:`csrm_guard.cli._bench.run_bench` and formats the report as tables, JSON and a plot.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Any

from csrm_guard._compat import require
from csrm_guard.errors import InputError, MissingDependencyError
from csrm_guard.guard import Decision, Guard
from csrm_guard.policy import Policy, load_policy

__all__ = ["register"]

_OK, _VIOLATION, _USAGE = 0, 1, 2
_DEFAULT_POLICY = Path("policies/general-assistant/policy.yaml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` and ``bench`` to the ``csrm-guard`` parser."""
    check = subparsers.add_parser(
        "check",
        help="score one conversation against a policy",
        description="Check a conversation (input stage) or a response (output stage) and print the decision "
        "with the violated clauses. Exit 0 when allowed, 1 when not, 3 when the model cannot be used.",
    )
    check.add_argument("--policy", required=True, metavar="POLICY", help="policy file or folder")
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--messages", metavar="FILE", help="JSON list of {role, content} messages ('-': stdin)"
    )
    source.add_argument("--message", metavar="TEXT", help="a single user message")
    check.add_argument("--response", metavar="TEXT", help="the assistant response to judge (output stage)")
    check.add_argument(
        "--stage", choices=("input", "output"), help="default: output with --response, else input"
    )
    _model_arguments(check)
    check.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    check.set_defaults(handler=_check)

    bench = subparsers.add_parser(
        "bench",
        help="measure check latency, throughput, start-up and memory against the ONNX floor",
        description="Measure p50/p90/p99 latency of check_input/check_output for several transcript lengths, "
        "policy sizes and numbers of concurrent async callers, import-plus-load time and peak RSS, each next to "
        "the floor (one ONNX pass over an input of the same length) measured in the same run.",
    )
    _model_arguments(bench)
    bench.add_argument(
        "--policy", metavar="POLICY", help=f"policy for the default rows (default: {_DEFAULT_POLICY})"
    )
    bench.add_argument("--iterations", type=int, default=20, help="timed checks per cell (default: 20)")
    bench.add_argument("--lengths", default="64,256,512", help="transcript lengths in tokens")
    bench.add_argument("--sizes", default="1,10,50,200", help="policy sizes in custom rules")
    bench.add_argument("--callers", default="1,8,64", help="numbers of concurrent async callers")
    bench.add_argument(
        "--top-k", type=int, default=20, help="retrieval top-k for long policies (0: score all)"
    )
    bench.add_argument("--no-startup", action="store_true", help="skip the import/RSS subprocess")
    bench.add_argument("--plot", metavar="PNG", help="write latency against policy size to this PNG")
    bench.add_argument("--out", metavar="JSON", help="also write the JSON report to this file")
    bench.add_argument("--from-json", metavar="JSON", help="format a saved report instead of measuring")
    bench.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format")
    bench.set_defaults(handler=_bench)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="BUNDLE", help="model bundle folder (default: the shipped bundle)")
    parser.add_argument(
        "--providers", default="auto", help="auto, cpu, cuda or comma-separated provider names"
    )
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: one per core)")


def _providers(value: str) -> str | list[str]:
    return value if value.lower() in {"auto", "cpu", "cuda", "gpu"} else value.split(",")


# -- check --------------------------------------------------------------------------------------------------------


def _read_messages(args: argparse.Namespace) -> list[Any]:
    if args.message is not None:
        return [{"role": "user", "content": args.message}]
    try:
        text = sys.stdin.read() if args.messages == "-" else Path(args.messages).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read messages: {exc}", location=args.messages) from exc
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if not isinstance(data, list):
        raise InputError("must hold a JSON list of {role, content} messages", location=args.messages)
    return data


def _check(args: argparse.Namespace) -> int:
    from csrm_guard.model import OnnxScorer  # noqa: PLC0415 - onnxruntime loads only for model commands

    messages = _read_messages(args)
    stage = args.stage or ("output" if args.response is not None else "input")
    if (
        stage == "output"
        and args.response is None
        and not any(m.get("role") == "assistant" for m in messages)
    ):
        print("error: the output stage needs --response or an assistant message", file=sys.stderr)
        return _USAGE
    scorer = OnnxScorer.load(args.model, providers=_providers(args.providers), threads=args.threads)
    with scorer, Guard(load_policy(Path(args.policy)), scorer=scorer) as guard:
        if stage == "input":
            decision = guard.check_input(messages)
        else:
            decision = (
                guard.check_output(messages, args.response)
                if args.response is not None
                else (guard.check_output(messages[:-1], str(messages[-1].get("content", ""))))
            )
    print(
        json.dumps(_jsonable(asdict(decision)), indent=2)
        if args.format == "json"
        else _decision_text(decision)
    )
    return _OK if decision.allowed else _VIOLATION


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _decision_text(decision: Decision) -> str:
    threshold = "n/a" if decision.threshold is None else f"{decision.threshold:.2f}"
    lines = [
        f"{decision.outcome} ({decision.stage} stage): violation probability {decision.violation_probability:.3f}, "
        f"threshold {threshold}, reward {decision.reward:+.2f}, {decision.latency_ms:.1f} ms",
        f"policy {decision.policy_name} {decision.policy_version} ({decision.policy_hash[:12]}), "
        f"model {decision.model_id or 'none'}",
    ]
    if decision.error:
        lines.append(f"error: {decision.error}")
    if decision.violations:
        lines.append("violated clauses:")
        lines.extend(
            f"  {v.id:<28} {v.kind:<9} p={v.probability:.3f}  action={_jsonable(v.action)}"
            for v in decision.violations
        )
    else:
        lines.append("no clause at or over the threshold")
    if decision.refusal:
        lines.append(f"refusal: {decision.refusal}")
    return "\n".join(lines)


# -- bench --------------------------------------------------------------------------------------------------------


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split(",") if part.strip())


def _bench(args: argparse.Namespace) -> int:
    from csrm_guard.cli import _bench as bench  # noqa: PLC0415 - loads onnxruntime

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        if args.plot:
            _plot(saved, Path(args.plot))
        _MARKDOWN.set(args.format == "markdown")
        print(format_report(saved))
        return _OK
    policy = _bench_policy(args.policy)
    config = bench.BenchConfig(
        bundle=Path(args.model) if args.model else None,
        policy=policy,
        providers=_providers(args.providers),  # type: ignore[arg-type]
        threads=args.threads,
        iterations=max(1, args.iterations),
        lengths=_ints(args.lengths),
        sizes=_ints(args.sizes),
        callers=_ints(args.callers),
        top_k=args.top_k or None,
        startup=not args.no_startup,
    )
    progress = (
        (lambda message: print(f"... {message}", file=sys.stderr))
        if args.format == "text"
        else (lambda _: None)
    )
    report = bench.run_bench(config, progress)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.plot:
        _plot(report, Path(args.plot))
    _MARKDOWN.set(args.format == "markdown")
    print(json.dumps(report, indent=2) if args.format == "json" else format_report(report))
    return _OK


def _bench_policy(path: str | None) -> Policy:
    if path:
        return load_policy(Path(path))
    if _DEFAULT_POLICY.exists():
        return load_policy(_DEFAULT_POLICY)
    return Policy(name="standard", categories={"violence": {}, "hate": {}, "self_harm": {}, "weapons": {}})


_MARKDOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("markdown", default=False)
_FLOOR_COLUMNS = {
    "input tokens": "input_length",
    "p50 ms": "p50_ms",
    "p90 ms": "p90_ms",
    "cpu ms": "cpu_p50_ms",
}
_CHECK_COLUMNS = {
    "stage": "stage",
    "tokens": "tokens",
    "passes": "passes",
    "p50 ms": "p50_ms",
    "p90 ms": "p90_ms",
    "p99 ms": "p99_ms",
    "cpu ms": "cpu_p50_ms",
    "p50/floor": "ratio",
    "cpu/floor": "cpu_ratio",
}
_SIZE_COLUMNS = {"rules": "rules", "clauses": "clauses", **_CHECK_COLUMNS}
_CALLER_COLUMNS = {
    "stage": "stage",
    "passes": "passes",
    "callers": "callers",
    "requests": "requests",
    "errors": "errors",
    "req/s": "throughput_rps",
    "floor req/s": "floor_rps",
    "ratio": "ratio",
    "cpu ratio": "cpu_ratio",
    "p50 ms": "p50_ms",
    "p99 ms": "p99_ms",
}


def format_report(report: dict[str, Any]) -> str:
    """Render a bench report as plain-text tables."""
    machine, bundle = report["machine"], report["bundle"]
    out = [
        f"model {bundle['model_id']} ({bundle['quantization']}, top_k {bundle['top_k']}), providers "
        f"{', '.join(machine['providers'])}, {machine['cpus']} CPUs, load average {machine['load_average']}",
        "",
        "floor: one ONNX pass, batch 1",
        _records(_FLOOR_COLUMNS, report["floor"]),
        "",
        f"default policy ({report['default_policy']['name']})",
        _records(_CHECK_COLUMNS, report["default_policy"]["checks"]),
        "",
        "policy size (custom rules; hard-limit categories come with every policy)",
        _records(_SIZE_COLUMNS, report["policy_sizes"]),
        "",
        "concurrent async callers (default policy; ratio = checks/s over the floor's single-stream passes/s)",
        _records(_CALLER_COLUMNS, report["concurrency"]),
    ]
    if "startup" in report:
        out += ["", "start-up: " + ", ".join(f"{k}={_cell(v)}" for k, v in report["startup"].items())]
    rows = [[t["name"], t["value"], t["target"], "yes" if t["met"] else "NO"] for t in report["targets"]]
    out += ["", "targets", _table(["target", "value", "bound", "met"], rows)]
    return "\n".join(out)


def _records(columns: dict[str, str], records: list[dict[str, Any]]) -> str:
    return _table(list(columns), [[record.get(key, "") for key in columns.values()] for record in records])


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[_cell(value) for value in row] for row in rows]]
    if _MARKDOWN.get():
        return "\n".join(
            "| " + " | ".join(row) + " |" for row in [cells[0], ["---"] * len(header), *cells[1:]]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        require("matplotlib", extra="eval")
    except MissingDependencyError as exc:
        print(f"warning: no plot: {exc}", file=sys.stderr)
        return
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for stage, marker, color in (("input", "o", "tab:blue"), ("output", "s", "tab:orange")):
        rows = [r for r in report["policy_sizes"] if r["stage"] == stage]
        clauses = [r["clauses"] for r in rows]
        axis.plot(
            clauses, [r["p50_ms"] for r in rows], marker=marker, color=color, label=f"check_{stage} p50"
        )
        axis.fill_between(
            clauses, [r["p50_ms"] for r in rows], [r["p90_ms"] for r in rows], color=color, alpha=0.15
        )
        if all("cpu_p50_ms" in r for r in rows):
            cpu = [r["cpu_p50_ms"] for r in rows]
            axis.plot(
                clauses,
                cpu,
                linestyle="--",
                marker=marker,
                color=color,
                alpha=0.6,
                label=f"check_{stage} CPU",
            )
    tokens = report["policy_sizes"][0]["tokens"] if report["policy_sizes"] else 256
    floor = max(report["floor"], key=lambda r: r["input_length"] if r["input_length"] <= tokens + 16 else -1)
    axis.axhline(
        floor["p50_ms"], color="grey", linestyle="--", label=f"floor ({floor['input_length']} tokens)"
    )
    axis.axhline(3 * floor["p50_ms"], color="red", linestyle=":", label="3x floor (target)")
    axis.set_xscale("log")
    axis.set_xlabel("clauses in the policy (custom rules + hard limits)")
    axis.set_ylabel("latency, ms")
    axis.set_title(
        f"{report['bundle']['model_id']}\nlatency vs policy size, {tokens}-token transcript", fontsize=10
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
