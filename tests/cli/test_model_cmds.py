"""Tests for the check and bench subcommands (csrm_guard/cli/model_cmds.py) against the random test bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csrm_guard.cli import main

POLICY = """\
api_version: csrm-guard/v1
name: cli-test
categories:
  violence: {max_severity: low}
rules:
  - id: no-lottery
    text: Do not predict lottery numbers.
"""


@pytest.fixture(name="policy_file")
def _policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


class TestCheck:
    def test_json_decision_and_exit_code(self, random_bundle, policy_file, capsys):
        """check prints the decision as JSON and exits 0 when allowed, 1 when not."""
        code = main(
            [
                "check",
                "--policy",
                str(policy_file),
                "--message",
                "hello",
                "--model",
                str(random_bundle),
                "--providers",
                "cpu",
                "--format",
                "json",
            ]
        )
        decision = json.loads(capsys.readouterr().out)
        assert code == (0 if decision["allowed"] else 1)
        assert decision["stage"] == "input"
        assert {s["clause_id"] for s in decision["scores"]} >= {"violence", "no-lottery"}
        assert decision["model_id"].startswith("random-test@0+")

    def test_text_output_stage_from_a_messages_file(self, random_bundle, policy_file, tmp_path, capsys):
        """With --response the output stage is checked and the text report names the policy and model."""
        messages = tmp_path / "messages.json"
        messages.write_text(json.dumps([{"role": "user", "content": "numbers?"}]), encoding="utf-8")
        code = main(
            [
                "check",
                "--policy",
                str(policy_file),
                "--messages",
                str(messages),
                "--response",
                "7 13 42",
                "--model",
                str(random_bundle),
            ]
        )
        out = capsys.readouterr().out
        assert code in {0, 1}
        assert "(output stage)" in out
        assert "policy cli-test" in out
        assert "random-test@0+" in out

    def test_bad_messages_file(self, random_bundle, policy_file, tmp_path, capsys):
        """A messages file that is not a JSON list is an operational error naming the file."""
        messages = tmp_path / "messages.json"
        messages.write_text('{"role": "user"}', encoding="utf-8")
        code = main(
            [
                "check",
                "--policy",
                str(policy_file),
                "--messages",
                str(messages),
                "--model",
                str(random_bundle),
            ]
        )
        assert code == 3
        assert "messages.json" in capsys.readouterr().err

    def test_missing_bundle(self, policy_file, tmp_path, capsys):
        """A missing bundle folder exits 3 with the bundle error."""
        code = main(
            ["check", "--policy", str(policy_file), "--message", "hi", "--model", str(tmp_path / "none")]
        )
        assert code == 3
        assert "does not exist" in capsys.readouterr().err

    def test_output_stage_needs_a_response(self, random_bundle, policy_file, capsys):
        """--stage output without a response or an assistant message is a usage error."""
        code = main(
            [
                "check",
                "--policy",
                str(policy_file),
                "--message",
                "hi",
                "--stage",
                "output",
                "--model",
                str(random_bundle),
            ]
        )
        assert code == 2


class TestBench:
    def test_quick_bench_json_and_plot(self, random_bundle, policy_file, tmp_path, capsys):
        """A small bench run reports floors, ratios, concurrency without errors, targets, and writes a plot."""
        plot = tmp_path / "latency.png"
        code = main(
            [
                "bench",
                "--model",
                str(random_bundle),
                "--policy",
                str(policy_file),
                "--providers",
                "cpu",
                "--iterations",
                "2",
                "--lengths",
                "64",
                "--sizes",
                "1,30",
                "--callers",
                "1,4",
                "--no-startup",
                "--plot",
                str(plot),
                "--format",
                "json",
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert code == 0
        assert plot.stat().st_size > 1000
        assert report["floor"]
        assert all(row["ratio"] > 0 for row in report["default_policy"]["checks"])
        sizes = {row["rules"]: row for row in report["policy_sizes"] if row["stage"] == "input"}
        assert sizes[30]["passes"] == 1 + 20  # taxonomy pass for the hard limits + top-20 rules
        assert all(row["errors"] == 0 for row in report["concurrency"])
        assert {row["callers"] for row in report["concurrency"]} == {1, 4}

    def test_saved_report_as_markdown(self, random_bundle, policy_file, tmp_path, capsys):
        """--out saves the JSON report and --from-json --format markdown renders it as Markdown tables."""
        saved = tmp_path / "bench.json"
        main([*_small_bench(random_bundle, policy_file, callers=1), "--out", str(saved)])
        capsys.readouterr()
        code = main(["bench", "--from-json", str(saved), "--format", "markdown"])
        out = capsys.readouterr().out
        assert code == 0
        assert "| stage | tokens | passes |" in out
        assert "| --- |" in out

    def test_text_report(self, random_bundle, policy_file, capsys):
        """The text format prints the tables and the target summary."""
        code = main(_small_bench(random_bundle, policy_file, callers=2))
        out = capsys.readouterr().out
        assert code == 0
        assert "floor: one ONNX pass" in out
        assert "p50/floor" in out
        assert "targets" in out


def _small_bench(bundle, policy, *, callers: int) -> list[str]:
    """A one-iteration ``bench`` command line: one 64-token length, one policy size, no start-up run."""
    return ["bench", "--model", str(bundle), "--policy", str(policy), "--iterations", "1", "--lengths", "64",
            "--sizes", "1", "--callers", str(callers), "--no-startup"]  # fmt: skip
