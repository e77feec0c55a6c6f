"""The test targets: what each one installs, reads and runs.

A target is a workspace package (its ``tests/`` in an environment holding only it and
what it declares) or ``tooling`` (the root ``tests/`` of scripts/, the noxfile and this
package). Its *inputs* are the files whose change can change its result; the affected
selection and the result cache both read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiprod_dev.environments import script_run_environment
from aiprod_dev.workspace import (
    ROOT,
    closure,
    dependency_graph,
    dependency_group,
    workspace_packages,
)

TOOLING = "tooling"
#: Minimum coverage (percent) per test target.
COVERAGE_MINIMUM = {"aiprod-core": 90, "aiprod-pipelines": 85, "aiprod-trainer": 85, TOOLING: 85}
TARGETS = tuple(COVERAGE_MINIMUM)

#: Inputs of every target: the lock, the shared pytest/coverage configuration, the root
#: conftest, CI's entry point and the code that installs environments and runs pytest.
ROOT_INPUTS = (
    "pyproject.toml", "uv.lock", "constraints.txt", "conftest.py", ".ci/",
    "aiprod_dev/workspace.py", "aiprod_dev/hosts.py", "aiprod_dev/lock.py",
    "aiprod_dev/environments.py", "aiprod_dev/targets.py",
)  # fmt: skip
#: What a package's installed code reads beyond its own folder (its dependents read it too).
SOURCE_EXTRAS = {"aiprod-core": ("config/",)}
#: What the tooling tests exercise.
TOOLING_INPUTS = (
    "scripts/", "tests/", "noxfile.py", "aiprod_dev/", "config/", "deploy/", ".github/",
    ".pre-commit-config.yaml",
)  # fmt: skip
#: Options that run only part of a target's tests, so its coverage minimum cannot apply.
SELECTING_OPTIONS = frozenset(
    {"-k", "-m", "--lf", "--last-failed", "--sw", "--stepwise", "--sw-skip",
     "--stepwise-skip", "--deselect", "--ignore", "--ignore-glob", "--co", "--collect-only"}
)  # fmt: skip
#: pytest options that take a value as the next argument (so that value is not a path).
VALUE_OPTIONS = frozenset(
    {"-k", "-m", "-p", "-n", "-c", "-o", "-r", "-W", "--deselect", "--ignore", "--ignore-glob",
     "--maxfail", "--dist", "--tb", "--durations", "--basetemp", "--rootdir", "--confcutdir",
     "--junitxml", "--cov", "--cov-report", "--cov-config", "--log-level", "--timeout",
     "--hypothesis-seed", "--hypothesis-profile"}
)  # fmt: skip
#: Extras installed wherever a package's code is tested or type-checked: the pipelines' HTTP
#: server is the ``server`` extra (the trainer installs the pipelines without it).
TESTED_EXTRAS = {"aiprod-pipelines": ("server",)}
#: pytest-xdist workers per target, where it pays (measured on 2 cores, docs/PERFORMANCE.md:
#: tooling 1.4x faster; the trainer 1.2x slower, its torch already uses both cores).
WORKERS = {TOOLING: "auto"}


def source_inputs(package: str, root: Path = ROOT) -> list[str]:
    """What a package installs into an environment: its metadata, sources and extras."""
    folder = workspace_packages(root)[package].relative_to(root).as_posix()
    return [f"{folder}/pyproject.toml", f"{folder}/src/", *SOURCE_EXTRAS.get(package, ())]


def target_inputs(target: str, root: Path = ROOT) -> list[str]:
    """Path prefixes (files, or folders ending in '/') whose content decides a target's result."""
    graph = dependency_graph(root)
    if target == TOOLING:
        installed = [p for name in graph for p in source_inputs(name, root)]
        return [*ROOT_INPUTS, *TOOLING_INPUTS, *installed]
    own = workspace_packages(root)[target].relative_to(root).as_posix() + "/"
    deps = [p for name in closure(graph, target) for p in source_inputs(name, root)]
    return [*ROOT_INPUTS, own, *deps]


def with_extras(package: str) -> str:
    """``package`` as a requirement naming its :data:`TESTED_EXTRAS` (``aiprod-pipelines[server]``)."""
    extras = TESTED_EXTRAS.get(package)
    return f"{package}[{','.join(extras)}]" if extras else package


def all_packages(root: Path = ROOT) -> list[str]:
    """Every workspace package with its tested extras: what an environment holding the whole
    workspace installs (type checking, the development .venv, the GPU tests)."""
    return [with_extras(name) for name in workspace_packages(root)]


def target_requirements(pyproject: Mapping[str, Any], target: str) -> list[str]:
    """What a target's environment installs: the package (or the scripts group) and test groups.

    A package comes with its :data:`TESTED_EXTRAS`; the tooling tests import every module of
    every package (the error hierarchy), so they get the pipelines' server extra too.
    """
    groups = pyproject.get("dependency-groups", {})
    test = dependency_group(pyproject, "test")
    if f"test-{target}" in groups:
        test += dependency_group(pyproject, f"test-{target}")
    if target == TOOLING:
        main = [*dependency_group(pyproject, "scripts"), *map(with_extras, TESTED_EXTRAS)]
    else:
        main = [with_extras(target)]
    return [*main, *test]


def coverage_sources(target: str) -> list[str]:
    return ["scripts", "aiprod_dev"] if target == TOOLING else [target.replace("-", "_")]


def target_tests(target: str, root: Path = ROOT) -> Path:
    return root / "tests" if target == TOOLING else workspace_packages(root)[target] / "tests"


def selection(posargs: Sequence[str]) -> str | None:
    """Why ``posargs`` run only part of the tests (the option or path), or None for all."""
    expect_value = False
    for arg in posargs:
        if expect_value:
            expect_value = False
            continue
        option = arg.split("=", 1)[0]
        if option in SELECTING_OPTIONS:
            return option
        if arg.startswith("-"):
            expect_value = "=" not in arg and option in VALUE_OPTIONS
            continue
        return arg  # a path or node id narrows the run
    return None


@dataclass(frozen=True)
class PytestRun:
    """One target's pytest invocation."""

    args: list[str]
    env: dict[str, str]
    subset: str | None  # what narrows the run (then no coverage minimum), None for all
    posargs: tuple[str, ...] = ()  # the user's own arguments, the end of ``args``


def pytest_run(target: str, posargs: Sequence[str], root: Path = ROOT) -> PytestRun:
    """The pytest command line and environment of one target."""
    subset = selection(posargs)
    narrowed = subset is not None and not subset.startswith("-")  # the user named paths
    args = [] if narrowed else [str(target_tests(target, root))]
    args += [f"--cov={source}" for source in coverage_sources(target)]
    args.append("--cov-report=term-missing:skip-covered")
    if subset is None:
        args.append(f"--cov-fail-under={COVERAGE_MINIMUM[target]}")
    if target in WORKERS:
        args += ["-n", WORKERS[target]]
    env = {"COVERAGE_FILE": str(root / f".coverage.{target}")}
    if target == TOOLING:
        env.update(script_run_environment(root))  # the tests import aiprod_dev, as scripts do
    return PytestRun([*args, *posargs], env, subset, tuple(posargs))


def typechecked(root: Path = ROOT) -> list[str]:
    """What ``nox -s typecheck`` gives mypy: every package's code, the scripts, the tooling."""
    packages = [
        (path / "src" / name.replace("-", "_")).relative_to(root).as_posix()
        for name, path in workspace_packages(root).items()
    ]
    scripts = sorted(p.relative_to(root).as_posix() for p in root.glob("scripts/*/*.py"))
    return [*packages, *scripts, "aiprod_dev", "noxfile.py"]


def coverage_target(path: str) -> str | None:
    """The test target a measured file belongs to."""
    parts = Path(path).parts
    if len(parts) > 1 and parts[0] == "packages":
        return parts[1]
    return TOOLING if parts and parts[0] in ("scripts", "aiprod_dev") else None


def coverage_by_target(report: Mapping[str, Any]) -> dict[str, float]:
    """Percent covered (lines and branches, as coverage.py counts) per test target."""
    totals: dict[str, list[int]] = {}
    for path, data in report["files"].items():
        target = coverage_target(path)
        if target is None:
            continue
        summary = data["summary"]
        counts = totals.setdefault(target, [0, 0])
        counts[0] += summary["covered_lines"] + summary.get("covered_branches", 0)
        counts[1] += summary["num_statements"] + summary.get("num_branches", 0)
    return {
        t: 100.0 * hit / total if total else 100.0 for t, (hit, total) in sorted(totals.items())
    }
