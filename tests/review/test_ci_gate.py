"""The example CI workflow and the pre-commit hooks, checked statically and run for real against a fake model."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xmlschema
import yaml

from csrm_guard.cli import build_parser, main
from csrm_guard.review.fmt import format_paths
from csrm_guard.review.runner import GuardPool

from .review_helpers import EXAMPLES, REPO, oracle_for

WORKFLOW = REPO / "examples" / "ci" / "policy-gate.yml"
HOOKS = REPO / ".pre-commit-hooks.yaml"
HELPERS = Path(__file__).with_name("review_helpers.py")
_ARRAY = re.compile(r'"\$\{\w+\[@\]\}"')  # "${options[@]}": bash arrays of optional flags


def _workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> list[dict[str, Any]]:
    return _workflow()["jobs"]["gate"]["steps"]


def _commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """Every ``csrm-guard ...`` command line of a shell script, with variables expanded."""
    commands = []
    for line in script.splitlines():
        if "csrm-guard " not in line or line.lstrip().startswith(("#", "echo")):
            continue
        words = shlex.split(_ARRAY.sub("", line), comments=True)
        words = [_expand(word, env) for word in words[words.index("csrm-guard") :]]
        end = next((i for i, word in enumerate(words) if word in {"||", "&&", ";", "|"}), len(words))
        commands.append(words[:end])
    return commands


def _expand(word: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), word)


def _job_env(base_dir: Path) -> dict[str, str]:
    values = {"${{ github.base_ref }}": "main", "${{ runner.temp }}": str(base_dir.parent)}
    env = {}
    for key, raw in _workflow()["env"].items():
        value = str(raw)
        for expression, replacement in values.items():
            value = value.replace(expression, replacement)
        env[key] = value
    return env


class TestWorkflowFile:
    def test_triggers_on_policy_pull_requests(self):
        """The workflow runs on pull requests that touch policies and may comment on them."""
        workflow = _workflow()
        trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
        assert "policies/**" in trigger["pull_request"]["paths"]
        assert workflow["permissions"]["pull-requests"] == "write"

    def test_runs_every_gate_in_order(self):
        """validate, fmt --check, render --check, test and diff run, in that order."""
        env = _job_env(Path("/tmp/base"))
        order = [cmd[1] for step in _steps() if "run" in step for cmd in _commands(step["run"], env)]
        assert order == ["validate", "fmt", "render", "test", "diff"]

    def test_every_command_parses(self):
        """Each csrm-guard command in a run step exists and its arguments parse."""
        parser = build_parser()
        subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        for step in _steps():
            for command in _commands(step.get("run", ""), _job_env(Path("/tmp/base"))):
                assert command[1] in subcommands, command
                args = parser.parse_args(command[1:])
                assert callable(args.handler), command

    def test_diff_is_posted_even_when_tests_fail(self):
        """The diff and the comment run after a failed step, so reviewers always see the impact."""
        steps = {step.get("name"): step for step in _steps()}
        assert steps["Diff against the base branch"]["if"] == "success() || failure()"
        assert "policy-diff.md" in steps["Post the diff on the pull request"]["with"]["path"]


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _shim(folder: Path, oracle_policies: Path) -> Path:
    """A ``csrm-guard`` executable that runs the real CLI with the oracle standing in for the model."""
    folder.mkdir()
    shim = folder / "csrm-guard"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import importlib.util, sys\n"
        "from pathlib import Path\n"
        f"spec = importlib.util.spec_from_file_location('review_helpers', {str(HELPERS)!r})\n"
        "helpers = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(helpers)\n"
        "from csrm_guard.review.runner import GuardPool\n"
        f"oracle = helpers.oracle_for(Path({str(oracle_policies)!r}))\n"
        "GuardPool.load_scorer = staticmethod(lambda model: oracle)\n"
        "from csrm_guard.cli import main\n"
        "sys.exit(main())\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture(name="pull_request")
def _pull_request(tmp_path: Path) -> Path:
    """A clone whose branch loosens bank-support's crime_nonviolent from 'low' to 'moderate'."""
    if not EXAMPLES.is_dir() or shutil.which("git") is None:
        pytest.skip("needs the example policies and git")
    seed = tmp_path / "seed"
    shutil.copytree(EXAMPLES, seed / "policies")
    format_paths([seed / "policies"], write=True)  # the gate expects formatted files
    _git(seed, "init", "-q", "-b", "main")
    _git(seed, "add", ".")
    _git(seed, "commit", "-q", "-m", "base")
    _git(tmp_path, "clone", "-q", "--bare", str(seed), "origin.git")
    work = tmp_path / "work"
    _git(tmp_path, "clone", "-q", (tmp_path / "origin.git").as_uri(), "work")
    policy = work / "policies" / "bank-support" / "policy.yaml"
    text = policy.read_text()
    assert "crime_nonviolent: {max_severity: low}" in text
    policy.write_text(
        text.replace("crime_nonviolent: {max_severity: low}", "crime_nonviolent: {max_severity: moderate}")
    )
    assert main(["render", str(policy), "--write"]) == 0
    _git(work, "commit", "-q", "-am", "loosen crime_nonviolent")
    return work


@pytest.mark.slow
def test_workflow_steps_run_against_a_pull_request(pull_request: Path, tmp_path: Path):
    """Run each run-step as GitHub would: the loosened severity fails a test and the diff reports the flip."""
    env = {**os.environ, **_job_env(tmp_path / "runner" / "base")}
    (tmp_path / "runner").mkdir()
    env["PATH"] = f"{_shim(tmp_path / 'bin', tmp_path / 'seed' / 'policies')}{os.pathsep}{env['PATH']}"
    codes = {}
    for step in _steps():
        if "run" not in step or step.get("id") == "install":
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=pull_request,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        codes[step["name"]] = done.returncode
    assert codes == {
        "Validate": 0,
        "Formatting": 0,
        "Rendered clauses match the goldens": 0,
        "Policy tests": 1,  # the loosened policy no longer flags money laundering
        "Check out the base branch": 0,
        "Diff against the base branch": 0,  # no expected-flips file: the diff informs, it does not gate
    }
    xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd")).validate(
        str(pull_request / "policy-tests.xml")
    )
    comment = (pull_request / "policy-diff.md").read_text()
    assert "| `categories.crime_nonviolent.max_severity` changed | low | moderate | laxer |" in comment
    assert "`money-laundering help` | input | refuse (p=0.91) | allow (p=0.07)" in comment
    assert "crime_nonviolent 0.91 → 0.07 (over→under, clause changed)" in comment


class TestPreCommitHooks:
    def _hooks(self) -> dict[str, dict[str, Any]]:
        return {hook["id"]: hook for hook in yaml.safe_load(HOOKS.read_text())}

    def test_hooks_call_existing_commands(self):
        """Every hook's entry is a csrm-guard command the parser accepts."""
        parser = build_parser()
        for hook in self._hooks().values():
            words = shlex.split(hook["entry"])
            assert words[0] == "csrm-guard"
            assert callable(parser.parse_args([*words[1:], "policies"]).handler), hook["id"]
            assert hook["language"] == "python"

    def test_file_patterns(self):
        """fmt hooks see policy and tests files; validate sees policy files only."""
        hooks = self._hooks()
        fmt, validate = (
            re.compile(hooks["csrm-guard-fmt"]["files"]),
            re.compile(hooks["csrm-guard-validate"]["files"]),
        )
        assert fmt.search("policies/bank/policy.yaml")
        assert fmt.search("policies/bank/policy_test.yaml")
        assert not fmt.search("policies/bank/rendered.txt")
        assert validate.search("policies/bank/policy.yml")
        assert not validate.search("policies/bank/policy_test.yaml")

    def test_hooks_run_on_the_examples(
        self, examples_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ):
        """Run each hook as pre-commit would (entry + matching files) on a copy of the example policies."""
        monkeypatch.chdir(examples_copy.parent)
        oracle = oracle_for(examples_copy)
        monkeypatch.setattr(GuardPool, "load_scorer", staticmethod(lambda model: oracle))
        files = sorted(
            str(p.relative_to(examples_copy.parent)) for p in examples_copy.rglob("*") if p.is_file()
        )
        hooks = self._hooks()
        order = ["csrm-guard-validate", "csrm-guard-fmt", "csrm-guard-fmt-check", "csrm-guard-test"]
        codes = {}
        for hook_id in order:
            hook = hooks[hook_id]
            matching = (
                [f for f in files if re.search(hook["files"], f)] if hook.get("pass_filenames", True) else []
            )
            codes[hook_id] = main([*shlex.split(hook["entry"])[1:], *matching])
        capsys.readouterr()
        assert codes == dict.fromkeys(order, 0)
        assert main(["fmt", "--check", "policies"]) == 0  # the fmt hook left the files canonical
