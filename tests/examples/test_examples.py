"""Every example script runs to completion and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "decorator_sync.py": ["Happy to help!", "Sorry, I can't help with that. (policy support-bot, output check)",
                          "blocked: stage=input violations=['weapons']"],
    "decorator_async.py": ["a kind answer to question 1",
                           "flagged: ['output:refuse', 'output:refuse', 'output:refuse']"],
    "streaming.py": ["quiet boats.", "Our sauce is", "[the rest of this answer was withheld]",
                     "plain stream of tokens -> allow"],
    "asgi_app.py": ["200 json -> Happy to help with: opening hours?", "200 json -> I can't help with that request.",
                    "200 stream -> you absolute I can't help with that request."],
    "openai_wrapper.py": ["plain: Sure: hello", "refused: I can't help with that request. (content_filter)",
                          "stream: the admin I can't help with that request.", "blocked input: ['no-secrets']"],
    "best_of_n.py": ["chosen: Our plan suits teams well.", "'Wow!!': reward=+0.00 allowed=False"],
}  # fmt: skip

# Text that the guard must have withheld.
WITHHELD = {"streaming.py": "tomatoes", "openai_wrapper.py": "hunter2", "asgi_app.py": "your answer"}


def test_every_example_is_listed() -> None:
    """Each script in examples/ has an entry here and in examples/README.md."""
    scripts = sorted(path.name for path in EXAMPLES.glob("*.py"))
    assert scripts == sorted(EXPECTED)
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in scripts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    """The example exits 0 without warnings on stderr and prints its expected lines."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[name]:
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"
    assert name not in WITHHELD or WITHHELD[name] not in result.stdout
