"""The README's line that puts the command-line tools on PATH works on a fresh copy."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from aiprod_dev.workspace import copy_checkout

#: The README's one-liner (its text is checked, then run on a copy of the repository).
DEVELOP_LINE = "nox -s develop && .venv/bin/aiprod-generate --version"


def test_readme_names_the_develop_line(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert f"`{DEVELOP_LINE}`" in readme


@pytest.mark.slow
def test_develop_puts_the_clis_in_dot_venv(repo_root: Path, tmp_path: Path) -> None:
    copy = copy_checkout(repo_root, tmp_path / "clone")  # what a fresh clone holds
    nox, rest = DEVELOP_LINE.split(" && ")
    made = subprocess.run(
        [sys.executable, "-m", *shlex.split(nox), "--non-interactive"],
        cwd=copy, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    assert "ready: `source .venv/bin/activate`" in made.stderr
    for command, package in (
        (rest, "aiprod-generate"),
        (".venv/bin/aiprod-serve --version", "aiprod-serve"),
        (".venv/bin/aiprod-train --version", "aiprod-train"),
    ):
        result = subprocess.run(shlex.split(command), cwd=copy, capture_output=True, text=True,
                                check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"{package} \d+\.\d+\.\d+\n", result.stdout)
