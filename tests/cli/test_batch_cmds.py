"""``csrm-guard score``: exit codes, the summary, and refusing to clobber output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from csrm_guard.cli import main


@pytest.fixture(name="corpus")
def _corpus(tmp_path: Path) -> Path:
    """A ten-row JSONL corpus with one unparseable line."""
    lines = [
        json.dumps({"id": i, "messages": [{"role": "user", "content": f"hello {i}"}], "response": f"hi {i}"})
        for i in range(9)
    ]
    lines.insert(4, "{broken")
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(name="policy_file")
def _policy_file(tmp_path: Path) -> Path:
    """A minimal policy file."""
    path = tmp_path / "policy.yaml"
    path.write_text("api_version: csrm-guard/v1\nname: demo\ncategories:\n  hate: {}\n", encoding="utf-8")
    return path


def _score(corpus: Path, policy: Path, out: Path, bundle: Path, *extra: str) -> int:
    return main(
        [
            "score",
            str(corpus),
            "--policy",
            str(policy),
            "--out",
            str(out),
            "--model",
            str(bundle),
            "--quiet",
            *extra,
        ]
    )


def test_score_writes_every_row_and_prints_throughput(corpus, policy_file, random_bundle, tmp_path, capsys):
    """A run exits 0, writes one row per input row and reports rows per second and the errors."""
    out = tmp_path / "out.jsonl"
    assert _score(corpus, policy_file, out, random_bundle) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    assert rows[4]["error"].startswith("line 5: invalid JSON")
    printed = capsys.readouterr().out
    assert "scored 10 rows" in printed
    assert "rows/s" in printed
    assert "errors: 1 rows" in printed


def test_json_summary(corpus, policy_file, random_bundle, tmp_path, capsys):
    """--json prints a machine-readable summary."""
    assert _score(corpus, policy_file, tmp_path / "out.parquet", random_bundle, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["scored"], summary["errors"], summary["engine"]) == (10, 10, 1, "local")
    assert summary["rows_per_second"] > 0


def test_existing_output_is_an_operational_error(corpus, policy_file, random_bundle, tmp_path, capsys):
    """An existing output exits 3 with a message; --overwrite replaces it."""
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n", encoding="utf-8")
    assert _score(corpus, policy_file, out, random_bundle) == 3
    assert "already exists" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "precious\n"
    assert _score(corpus, policy_file, out, random_bundle, "--overwrite") == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 10


def test_missing_input_is_an_operational_error(policy_file, random_bundle, tmp_path, capsys):
    """A missing input exits 3 naming the file."""
    assert _score(tmp_path / "absent.jsonl", policy_file, tmp_path / "o.jsonl", random_bundle) == 3
    assert "absent.jsonl" in capsys.readouterr().err


def test_ray_options_need_the_ray_engine(corpus, policy_file, random_bundle, tmp_path, capsys):
    """--address without --engine ray is a usage error."""
    assert _score(corpus, policy_file, tmp_path / "o.jsonl", random_bundle, "--address", "auto") == 2
    assert "--engine ray" in capsys.readouterr().err


def test_progress_without_tqdm_prints_lines(
    corpus, policy_file, random_bundle, tmp_path, capsys, monkeypatch
):
    """Without tqdm the command still reports progress, as plain lines on standard error."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    args = [
        "score",
        str(corpus),
        "-p",
        str(policy_file),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--model",
        str(random_bundle),
    ]
    assert main(args) == 0
    assert "scoring: 10/10 rows" in capsys.readouterr().err
