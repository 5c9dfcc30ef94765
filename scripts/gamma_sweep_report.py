"""Summarise the gamma sweep (scripts/gamma_sweep.sh): one table row per run and a plot of the metrics against gamma.

Reads, for every ``runs/gamma-*`` folder that finished: the config's ``gamma``, the last dev record of
``log.jsonl`` (training-time dev: 150 clause rows, 60 taxonomy rows, 50 pairs), the export's calibration report in
``bundle/manifest.json`` and the ``eval-*.json`` files of ``csrm-guard eval``. Prints a markdown table and writes
the plot (default ``docs/img/gamma-sweep.png``).

Usage: python scripts/gamma_sweep_report.py [--runs runs] [--plot docs/img/gamma-sweep.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml

COLUMNS = (
    ("strictness pair acc", "strictness-dev", "pair_acc"),
    ("monotonicity viol.", "strictness-dev", "monotonicity"),
    ("pairs-dev acc", "pairs-dev", "pair_acc"),
    ("configurable-dev F1", "configurable-dev", "f1"),
    ("configurable-dev AUPRC", "configurable-dev", "auprc"),
    ("configurable-dev smECE", "configurable-dev", "smece"),
)
POLICY_COLUMNS = (
    ("handwritten F1", "handwritten", "f1"),
    ("rules-dev F1", "rules-dev", "f1"),
    ("BeaverTails F1", "beavertails-dev", "f1"),
)
"""Policy-level benchmarks: shown when every run has them (``csrm-guard eval --benchmark NAME`` per run)."""


def _eval_value(run: Path, benchmark: str, metric: str) -> float:
    rows = json.loads((run / f"eval-{benchmark}.json").read_text(encoding="utf-8"))
    (row,) = [r for r in rows if r["system"] == "csrm" and r["slice"] == "all"]
    return float(row[metric])


def collect(runs: Path) -> list[dict[str, Any]]:
    """One record per finished sweep run, sorted by gamma."""
    records = []
    for run in sorted(runs.glob("gamma-*")):
        if not all((run / f"eval-{benchmark}.json").exists() for _, benchmark, _ in COLUMNS):
            continue
        config = yaml.safe_load(Path("configs/gamma-sweep", f"{run.name}.yaml").read_text(encoding="utf-8"))
        log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
        dev = [entry for entry in log if entry.get("event") == "dev"][-1]
        manifest = json.loads((run / "bundle" / "manifest.json").read_text(encoding="utf-8"))
        record: dict[str, Any] = {
            "gamma": float(config["gamma"]),
            "seed": int(config["seed"]),
            "steps": dev["step"],
            "dev F1 (train-time)": dev["dev_f1"],
            "dev AUPRC (train-time)": dev["dev_auprc"],
            "export dev smECE": manifest["metrics"]["dev_calibration"]["smece_after"],
        }
        for label, benchmark, metric in COLUMNS:
            record[label] = _eval_value(run, benchmark, metric)
        for label, benchmark, metric in POLICY_COLUMNS:
            if (run / f"eval-{benchmark}.json").exists():
                record[label] = _eval_value(run, benchmark, metric)
        records.append(record)
    complete = [label for label, _, _ in POLICY_COLUMNS if all(label in r for r in records)]
    for record in records:  # a policy-level column only when every run has it
        for label, _, _ in POLICY_COLUMNS:
            if label not in complete:
                record.pop(label, None)
    return sorted(records, key=lambda r: (r["gamma"], r["seed"]))


def table(records: list[dict[str, Any]]) -> str:
    """The records as a markdown table (gamma as rows)."""
    keys = [k for k in records[0] if k != "gamma"]
    lines = ["| gamma | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for record in records:
        cells = [f"{record[k]:.0f}" if k in {"steps", "seed"} else f"{record[k]:.3f}" for k in keys]
        lines.append(f"| {record['gamma']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """One panel per metric group against gamma; runs with another seed than the first are unconnected crosses."""
    gammas = sorted({r["gamma"] for r in records})
    position = {gamma: index for index, gamma in enumerate(gammas)}  # categorical: 0 does not fit a log scale
    first_seed = min(r["seed"] for r in records)
    main_runs = [r for r in records if r["seed"] == first_seed]
    other_runs = [r for r in records if r["seed"] != first_seed]
    panels: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("Strictness and preference pairs", ("strictness pair acc", "pairs-dev acc")),
        ("configurable-dev (threshold from the manifest)", ("configurable-dev F1", "configurable-dev AUPRC")),
        ("Errors (lower is better)", ("monotonicity viol.", "configurable-dev smECE")),
    )
    policy = tuple(label for label, _, _ in POLICY_COLUMNS if label in records[0])
    if policy:
        panels = (*panels, ("Policy level (whole policies)", policy))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            (line,) = ax.plot(
                [position[r["gamma"]] for r in main_runs], [r[key] for r in main_runs], marker="o"
            )
            line.set_label(f"{key} (seed {first_seed})")
            for run in other_runs:
                ax.scatter(position[run["gamma"]], run[key], marker="x", s=60, color=line.get_color())
        ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("gamma (weight of the Bradley-Terry loss)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    steps = sorted({int(r["steps"]) for r in records})
    seeds = ", ".join(str(r["seed"]) for r in other_runs)
    title = f"gamma sweep: runs of {'/'.join(map(str, steps))} steps from the base encoder, differing only in gamma"
    if other_runs:
        title += f" (x: the same gamma with seed {seeds}, the run-to-run noise)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--plot", type=Path, default=Path("docs/img/gamma-sweep.png"))
    args = parser.parse_args()
    records = collect(args.runs)
    if not records:
        raise SystemExit(f"no finished sweep runs under {args.runs}/gamma-* (run scripts/gamma_sweep.sh)")
    print(table(records))
    plot(records, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
