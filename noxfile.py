# /// script
# requires-python = ">=3.11"
# dependencies = ["nox[uv]>=2026.8.10"]
# ///
"""AIPROD's developer and CI tasks: this file is the table of contents.

`nox -l` lists the sessions; a bare `nox` runs lint, typecheck, tests and coverage. Every
session builds its own environment from the locked versions (uv.lock, exported to
constraints.txt), reuses it until what it was built from changes, and passes settings to
the commands it runs with `env=` (never through os.environ). The work lives in aiprod_dev/
(environments, affected selection, result cache), scripts/ and the packages.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # aiprod_dev/ lives beside this file, not in nox's environment
from aiprod_dev import changes, environments, hosts, lock, results, targets  # noqa: E402
from aiprod_dev.workspace import (  # noqa: E402
    SCRIPT_CATEGORIES,
    category_scripts,
    dependency_group,
    find_script,
    load_toml,
    script_description,
)

sys.path.remove(str(ROOT))

nox.needs_version = ">=2026.8.10"  # allow_parallel= (2026.8.10), CommandFailed.return_code
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "tests", "coverage"]

PYPROJECT = load_toml(ROOT / "pyproject.toml")
SCRIPTS = ROOT / "scripts"
RUN_ENV = environments.script_run_environment(ROOT)


@nox.session(allow_parallel=True, tags=["ci"])
@nox.parametrize("target", targets.TARGETS, ids=targets.TARGETS)
def tests(session: nox.Session, target: str) -> None:
    """Run one target's tests in an environment holding only it, with coverage; cached."""
    environments.install(session, targets.target_requirements(PYPROJECT, target))
    posargs, force = results.strip_force(session.posargs)
    run = targets.pytest_run(target, posargs, ROOT)
    results.run_tests(session, target, run, ROOT, force)


@nox.session(requires=["tests"], default=True)
def coverage(session: nox.Session) -> None:
    """Combine the tests' coverage data: per-target table, htmlcov/ and coverage.xml."""
    environments.install(session, dependency_group(PYPROJECT, "coverage"))
    data = sorted(str(path) for path in ROOT.glob(".coverage.*"))
    if not data:
        session.error("no coverage data; run `nox -s tests` first")
    env = {"COVERAGE_FILE": str(ROOT / ".coverage")}
    session.run("coverage", "combine", "--keep", "--quiet", *data, env=env)
    summary = ROOT / ".nox" / "coverage.json"
    session.run("coverage", "json", "--quiet", "-o", str(summary), env=env)
    session.log("per-target coverage (minimum in brackets):")
    for target, percent in targets.coverage_by_target(json.loads(summary.read_text())).items():
        minimum = targets.COVERAGE_MINIMUM[target]
        session.log(
            f"  {target:<18} {percent:6.1f}%  [{minimum}%]{'' if percent >= minimum else '  BELOW'}"
        )
    session.run("coverage", "report", "--skip-covered", env=env)
    session.run("coverage", "html", "--quiet", env=env)
    session.run("coverage", "xml", "--quiet", env=env)


@nox.session(venv_backend="none", default=False)
def affected(session: nox.Session) -> None:
    """Run only the test targets a change touches: `-- --since REF` (default: merge base), `--list`."""
    options, pytest_args = changes.parse_arguments(session.posargs)
    try:
        since = options.since or changes.default_base(ROOT)
        selection = changes.select(ROOT, changes.changed_files(ROOT, since))
    except ValueError as exc:
        session.error(str(exc))
    for line in selection.report(options.since or f"the merge base with main ({since[:12]})"):
        session.log(line)
    if options.list:
        print(json.dumps(selection.targets))
        return
    for target in selection.targets:
        session.notify(f"tests({target})", posargs=pytest_args)


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """Check the lock, then every pre-commit hook: ruff, hadolint, shellcheck, workflow schema, ..."""
    if problems := lock.check(ROOT, hosts.uv_binary(), os.environ):
        session.error("the lock is not in order:\n  " + "\n  ".join(problems))
    session.log("uv.lock is current, portable and exported to constraints.txt")
    lint_group = dependency_group(PYPROJECT, "lint")
    environments.install(session, lint_group, [ROOT / ".pre-commit-config.yaml"])
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session(tags=["ci"])
def typecheck(session: nox.Session) -> None:
    """Type-check the packages (aiprod-core strictly), the scripts, aiprod_dev and this file."""
    packages = targets.all_packages(ROOT)
    groups = [*dependency_group(PYPROJECT, "scripts"), *dependency_group(PYPROJECT, "typecheck")]
    environments.install(session, [*packages, *groups])
    session.run("mypy", *(session.posargs or targets.typechecked(ROOT)))


@nox.session(venv_backend="none", default=False)
def clean(session: nox.Session) -> None:
    """Remove what tools generate (caches, coverage, builds); `-- --all` also .nox/."""
    session.run(
        sys.executable, str(SCRIPTS / "maintenance" / "clean.py"), *session.posargs, external=True
    )


@nox.session(venv_backend="none", default=False, tags=["gpu"])
def gpu_smoke(session: nox.Session) -> None:
    """Check a CUDA host (versions, matmul, attention, compile, model); skips without one."""
    script = SCRIPTS / "testing" / "gpu_smoke.py"
    build = partial(environments.script_environment, session, script)
    python = environments.cuda_environment(session, build)
    session.run(str(python), str(script), *session.posargs, external=True, env=RUN_ENV)


@nox.session(venv_backend="none", default=False, tags=["gpu"])
def gpu_check(session: nox.Session) -> None:
    """Check the 19B paths on a CUDA host: gpu_smoke, training MFU, FSDP over NCCL, bf16 generation."""
    script = SCRIPTS / "testing" / "gpu_check.py"
    python = environments.cuda_environment(session, partial(environments.script_environment, session, script))  # fmt: skip
    session.run(str(python), str(script), *session.posargs, external=True, env=RUN_ENV)


@nox.session(venv_backend="none", default=False, tags=["gpu"])
def gpu_tests(session: nox.Session) -> None:
    """Run the gpu-marked tests of every target on a CUDA host, with the host's torch."""
    requirements = [*targets.all_packages(ROOT), *dependency_group(PYPROJECT, "scripts"),
                    *dependency_group(PYPROJECT, "test")]  # fmt: skip
    build = partial(environments.environment, session, "gpu-tests", requirements)
    python = environments.cuda_environment(session, build)
    pytest_args = [arg for arg in session.posargs if arg != "--require-gpu"]
    for target in targets.TARGETS:
        session.run(str(python), "-m", "pytest", str(targets.target_tests(target, ROOT)), "-m", "gpu",
                    *pytest_args, external=True, env=RUN_ENV, success_codes=[0, 5])  # fmt: skip


@nox.session(venv_backend="none", default=False)
def develop(session: nox.Session) -> None:
    """Make .venv: every package, editable, at the locked versions (puts the CLIs on PATH)."""
    requirements = [*targets.all_packages(ROOT), *dependency_group(PYPROJECT, "test")]
    venv = ROOT / ".venv"
    environments.environment(session, "develop", requirements, location=venv, editable=True)
    session.log("ready: `source .venv/bin/activate` puts aiprod-generate, aiprod-serve and")
    session.log("aiprod-train on PATH (or run them as .venv/bin/aiprod-generate ...)")


@nox.session(venv_backend="none", default=False)
def demo(session: nox.Session) -> None:
    """The main job: train the tiny model on synthetic data, then generate videos."""
    script = SCRIPTS / "dev" / "demo.py"
    python = environments.script_environment(session, script)
    session.run(str(python), str(script), *session.posargs, external=True, env=RUN_ENV)


def category_session(category: str) -> None:
    """`nox -s <category>` lists scripts/<category>/; `-- <script> [args]` runs one."""

    def run(session: nox.Session) -> None:
        if not session.posargs:
            scripts = category_scripts(category, ROOT)
            session.log(f"scripts/{category}/ — run one with: nox -s {category} -- <script> [args]")
            width = max((len(name) for name in scripts), default=0)
            for name, path in scripts.items():
                print(f"  {name:<{width}}  {script_description(path)}")
            return
        name, *args = session.posargs
        try:
            script = find_script(category, name, ROOT)
        except ValueError as exc:
            session.error(str(exc))
        python = environments.script_environment(session, script)
        session.run(str(python), str(script), *args, external=True, env=RUN_ENV)

    run.__doc__ = f"List scripts/{category}/, or run one: nox -s {category} -- <script> [args]."
    run.__name__ = category
    nox.session(name=category, venv_backend="none", default=False)(run)


for _category in SCRIPT_CATEGORIES:
    category_session(_category)
