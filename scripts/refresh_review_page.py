"""Re-run the commands shown in docs/review.md with the shipped bundle and rewrite their outputs in the page.

After a new default bundle ships, the recorded outputs drift and ``tests/review/test_review_docs.py`` fails. This
script replays the same walkthrough as that test (the example policies as the base branch, privacy relaxed to
``moderate`` in a working copy) and replaces, in place, the output under each ``$ command`` line and the quoted
pull-request comment. The prose around the outputs (which cases fail and why, how many flip) is not rewritten:
read the new outputs and update it by hand.

Usage: python scripts/refresh_review_page.py [--page docs/review.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
CHANGE = ("  privacy: {max_severity: low}\n", "  privacy: {max_severity: moderate}\n")


def _run(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cli(argv)
    return out.getvalue() + err.getvalue()


@contextlib.contextmanager
def _walkthrough() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "policies", root / "policies")
        shutil.copytree(REPO / "policies", root / "base" / "policies")
        previous = Path.cwd()
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous)


def outputs() -> tuple[dict[str, str], str]:
    """The output of each command the page shows, and the markdown diff comment."""
    shown: dict[str, str] = {}
    with _walkthrough() as root:
        shown["csrm-guard test policies/ --run '^general-assistant::'"] = _run(
            ["test", "policies/", "--run", "^general-assistant::"]
        )
        policy = root / "policies" / "general-assistant" / "policy.yaml"
        policy.write_text(policy.read_text(encoding="utf-8").replace(*CHANGE), encoding="utf-8")
        shown["csrm-guard render policies/general-assistant --check"] = _run(
            ["render", "policies/general-assistant", "--check"]
        )
        _run(["render", "policies/general-assistant", "--write"])
        shown["csrm-guard test policies/ --run 'doxxing'"] = _run(["test", "policies/", "--run", "doxxing"])
        shown["csrm-guard diff base/policies policies"] = _run(["diff", "base/policies", "policies"])
        comment = _run(["diff", "base/policies", "policies", "--format", "markdown"])
    return shown, comment


def rewrite(page: str, shown: dict[str, str], comment: str) -> str:
    """The page with each command's output and the quoted comment replaced."""
    for command, output in shown.items():
        start = page.index(f"$ {command}\n") + len(command) + 3
        page = page[:start] + output + page[page.index("```", start) :]
    quoted = "\n".join(f"> {line}" if line else ">" for line in comment.rstrip("\n").split("\n"))
    return re.sub(
        r"^> ## csrm-guard policy diff\n(?:>.*\n)*", lambda _: quoted + "\n", page, count=1, flags=re.M
    )


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=REPO / "docs" / "review.md")
    args = parser.parse_args()
    shown, comment = outputs()
    args.page.write_text(rewrite(args.page.read_text(encoding="utf-8"), shown, comment), encoding="utf-8")
    for command, output in shown.items():
        print(f"$ {command}\n{output}")


if __name__ == "__main__":
    main()
