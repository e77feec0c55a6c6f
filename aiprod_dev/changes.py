"""Which test targets a change affects, and why.

A change is the set of files that differ from a git ref: committed since it, staged,
unstaged and untracked (not ignored). The rules, from ``targets``:

- a root input (root ``pyproject.toml``, the lock, the root conftest, ``.ci/``, the code
  that installs environments) selects every target;
- a file in a package's folder selects that package; a change to what it installs (its
  ``pyproject.toml``, ``src/``, or what its code reads, such as ``config/`` for core) also
  selects every package that depends on it, transitively, from the declared dependencies;
- scripts/, the root tests/, the noxfile and the other tooling inputs select ``tooling``;
- anything else (documentation, licence) selects nothing.

``tooling`` is not selected by a package change even though the scripts use the packages:
the result cache, which keys ``tooling`` on those sources, reruns it in ``nox -s tests``.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aiprod_dev.targets import (
    ROOT_INPUTS,
    TARGETS,
    TOOLING,
    TOOLING_INPUTS,
    source_inputs,
)
from aiprod_dev.workspace import closure, dependency_graph, workspace_packages

MAIN_BRANCHES = ("main", "origin/main", "master", "origin/master")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def default_base(root: Path) -> str:
    """The merge base of HEAD with the main branch (the default of ``--since``)."""
    for branch in MAIN_BRANCHES:
        result = _git(root, "merge-base", "HEAD", branch)
        if result.returncode == 0:
            return result.stdout.strip()
    raise ValueError(
        f"no main branch to compare with (tried {', '.join(MAIN_BRANCHES)}); pass --since REF"
    )


def changed_files(root: Path, since: str) -> list[str]:
    """Files that differ from ``since``: committed, staged, unstaged and untracked."""
    if _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}").returncode != 0:
        raise ValueError(f"--since {since!r} is not a commit of this repository")
    diff = _git(root, "diff", "--name-only", "--no-renames", since, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    if diff.returncode != 0 or untracked.returncode != 0:
        raise RuntimeError(f"git failed: {(diff.stderr or untracked.stderr).strip()}")
    return sorted({*diff.stdout.splitlines(), *untracked.stdout.splitlines()} - {""})


def matches(path: str, prefix: str) -> bool:
    """Whether ``path`` is the file ``prefix`` or lies in the folder ``prefix`` ('x/')."""
    return path.startswith(prefix) if prefix.endswith("/") else path == prefix


@dataclass
class Selection:
    """The targets a change selects, each with its reason, and the files nothing reads."""

    changed: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        return [target for target in TARGETS if target in self.reasons]

    def report(self, since: str) -> list[str]:
        """Human-readable lines: what changed, each selected target and why."""
        lines = [f"{len(self.changed)} changed file(s) since {since}"]
        lines += [f"  {target}: {self.reasons[target]}" for target in self.targets]
        if not self.reasons:
            lines.append("  no test target reads what changed: nothing to run")
        if self.unread:
            lines.append(f"  read by no target: {_few(self.unread)}")
        return lines


def _few(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


def select(root: Path, changed: list[str]) -> Selection:
    """Apply the rules above to a list of changed paths (relative, '/'-separated)."""
    selection = Selection(changed)
    root_changes = [p for p in changed if any(matches(p, prefix) for prefix in ROOT_INPUTS)]
    if root_changes:
        for target in TARGETS:
            selection.reasons[target] = f"{_few(root_changes)} changed (every target reads it)"
        return selection
    members = workspace_packages(root)
    graph = dependency_graph(root)
    folders = {name: path.relative_to(root).as_posix() + "/" for name, path in members.items()}
    own = {name: [p for p in changed if matches(p, folder)] for name, folder in folders.items()}
    installed = {
        name: [p for p in changed if any(matches(p, s) for s in source_inputs(name, root))]
        for name in members
    }
    for name in members:
        if own[name]:
            selection.reasons[name] = f"changed ({_few(own[name])})"
        elif installed[name]:
            selection.reasons[name] = f"reads {_few(installed[name])}, which changed"
        else:
            dependency = next((d for d in closure(graph, name) if installed[d] and d != name), None)
            if dependency is not None:
                selection.reasons[name] = f"depends on {dependency}, which changed"
    tooling = [p for p in changed if any(matches(p, prefix) for prefix in TOOLING_INPUTS)]
    if tooling:
        selection.reasons[TOOLING] = f"{_few(tooling)} changed"
    read = {p for paths in (*own.values(), *installed.values(), tooling) for p in paths}
    selection.unread = [p for p in changed if p not in read]
    return selection


def parse_arguments(posargs: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``--since REF`` and ``--list`` for the affected session; the rest goes to pytest."""
    parser = argparse.ArgumentParser(prog="nox -s affected --", add_help=False)
    parser.add_argument("--since", metavar="REF", help="git ref to compare with")
    parser.add_argument("--list", action="store_true", help="print the selection as JSON")
    return parser.parse_known_args(posargs)
