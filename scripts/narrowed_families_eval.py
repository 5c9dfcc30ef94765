"""Score the held-out narrowed-category scenario families (dev and test rows) with one or more model bundles.

Usage: python scripts/narrowed_families_eval.py [--files F1,F2...] DATA_BUILD BUNDLE [BUNDLE...]
(BUNDLE ``default``: the shipped one; ``--files part11.yaml,part12.yaml`` scores the held-out families of those
scenario files instead of the narrowed-category ones.)

Prints, per bundle, clause-level F1, recall, AUPRC and over-refusal at the bundle's clause thresholds, then the share
flagged and the mean probability for the rows of each kind: ``scn:violated`` (what the rewritten description still
covers), ``scn:compliant`` (what it exempts) and ``scn:foreign`` (conversations known to be within max_severity).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from csrm_guard.evaluation.datasets import EvalExample
from csrm_guard.evaluation.run import _binary_values, clause_row_example, score_rows
from csrm_guard.evaluation.runner import BundleRunner
from csrm_guard.training.scenario_rules import load_families

KINDS = ("scn:violated", "scn:compliant", "scn:other_rule", "scn:foreign")


def held_out_rows(build: Path, files: set[str] | None = None) -> list[EvalExample]:
    """The dev and test clause rows of the narrowed-category families, or of every family in ``files``."""
    families = load_families().items()
    if files is None:
        chosen = {family_id for family_id, family in families if family.spec.category}
    else:
        chosen = {family_id for family_id, family in families if family.file in files}
    rows = []
    for split in ("dev", "test"):
        for line in (build / split / "clauses.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["source"] == "scenarios" and row["id"].split(":")[1] in chosen:
                rows.append(clause_row_example(row, "narrowed"))
    return rows


def main(argv: list[str]) -> int:
    files: set[str] | None = None
    if argv[:1] == ["--files"] and len(argv) > 1:
        files, argv = set(argv[1].split(",")), argv[2:]
    if len(argv) < 2:
        print(__doc__)
        return 2
    rows = held_out_rows(Path(argv[0]), files)
    labels = np.array([row.label for row in rows])
    for bundle in argv[1:]:
        scored = score_rows(BundleRunner(None if bundle == "default" else Path(bundle)), rows)
        values = _binary_values(labels, scored)
        print(
            bundle,
            {k: round(values[k], 3) for k in ("n", "positives", "f1", "recall", "auprc", "over_refusal")},
        )
        flagged = scored.probabilities >= scored.thresholds
        for kind in KINDS:
            index = [i for i, row in enumerate(rows) if row.kind == kind]
            if not index:
                continue
            share, mean = flagged[index].mean(), scored.probabilities[index].mean()
            print(f"  {kind}: n={len(index)} flagged={share:.3f} mean p={mean:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
