# /// script
# requires-python = ">=3.11"
# dependencies = ["nox[uv]>=2025.2.9"]
# ///
"""AIPROD's developer and CI tasks.

`nox -l` lists the sessions; a bare `nox` runs lint, tests and coverage. Every session
builds its own environment (uv when available, else virtualenv + pip), reuses it between
runs and reinstalls only when what it was built from has changed. Session bodies are thin:
the work lives in scripts/ and in the packages.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests", "coverage"]

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
CONSTRAINTS = ROOT / "constraints.txt"
SCRIPTS = ROOT / "scripts"
SCRIPT_CATEGORIES = ("data", "maintenance", "testing", "dev", "deployment")
STAMP_NAME = ".aiprod-inputs.sha256"

#: Minimum coverage (percent) per test target; "tooling" is the root tests/ of scripts/.
COVERAGE_MINIMUM = {"aiprod-core": 90, "aiprod-pipelines": 85, "aiprod-trainer": 85, "tooling": 85}


# --- helpers (plain functions; tests/test_noxfile.py exercises them) -----------------------


def normalize(name: str) -> str:
    """A distribution name in its PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution name at the start of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def workspace_packages(root: Path = ROOT) -> dict[str, Path]:
    """Workspace member names mapped to their folders."""
    members = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        name = nox.project.load_toml(pyproject)["project"]["name"]
        members[normalize(name)] = pyproject.parent
    return members


def package_dependencies(package: str, root: Path = ROOT) -> list[str]:
    """The ``[project] dependencies`` a workspace package declares."""
    pyproject = workspace_packages(root)[normalize(package)] / "pyproject.toml"
    return list(nox.project.load_toml(pyproject)["project"].get("dependencies", []))


def split_requirements(
    requirements: Iterable[str], root: Path = ROOT
) -> tuple[list[Path], list[str]]:
    """Separate workspace packages (closed over their own workspace dependencies) from the rest.

    Returns the folders of the workspace packages to install, dependencies first, and the
    remaining third-party requirement strings, in their original order without repeats.
    """
    members = workspace_packages(root)
    local: list[Path] = []
    external: list[str] = []

    def visit(requirement: str) -> None:
        name = requirement_name(requirement)
        if name not in members:
            if requirement not in external:
                external.append(requirement)
            return
        if members[name] in local:
            return
        for dependency in package_dependencies(name, root):
            if requirement_name(dependency) in members:
                visit(dependency)
        local.append(members[name])

    for requirement in requirements:
        visit(requirement)
    return local, external


def script_metadata(script: Path) -> dict:
    """The PEP 723 ``# /// script`` block of a script (empty when it has none)."""
    return nox.project.load_toml(script) if "# /// script" in script.read_text() else {}


def script_description(script: Path) -> str:
    """The first line of a script's module docstring, read without importing it."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    return docstring.splitlines()[0].strip() if docstring else "(no description)"


def category_scripts(category: str, root: Path = ROOT) -> dict[str, Path]:
    """Script names (file stems) of one scripts/ category mapped to their paths."""
    return {path.stem: path for path in sorted((root / "scripts" / category).glob("*.py"))}


def find_script(category: str, name: str, root: Path = ROOT) -> Path:
    """The script ``name`` (with or without .py) in ``category``, or a clear error."""
    scripts = category_scripts(category, root)
    stem = name.removesuffix(".py")
    if stem not in scripts:
        known = ", ".join(scripts) or "(none)"
        raise ValueError(f"no script {name!r} in scripts/{category}/; expected one of: {known}")
    return scripts[stem]


def pip_find_links(environ: Mapping[str, str], config_files: Iterable[Path]) -> str | None:
    """pip's find-links setting: $PIP_FIND_LINKS, else the last pip config file that sets it."""
    if environ.get("PIP_FIND_LINKS"):
        return environ["PIP_FIND_LINKS"]
    found = None
    for path in config_files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "find-links"):
                found = " ".join(parser.get(section, "find-links").split())
    return found


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's config files in the order pip reads them (later ones win)."""
    home = Path(environ.get("HOME", str(Path.home())))
    xdg = environ.get("XDG_CONFIG_HOME", str(home / ".config"))
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", Path(xdg) / "pip" / "pip.conf"]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return [path for path in files if path.is_file()]


def forward_find_links(environ: dict[str, str]) -> str | None:
    """Give uv the find-links pip is configured with (uv does not read pip's config).

    This is how a host that provides a local CPU build of torch keeps uv from downloading
    the multi-GB CUDA build. An explicit $UV_FIND_LINKS is left alone.
    """
    if environ.get("UV_FIND_LINKS"):
        return environ["UV_FIND_LINKS"]
    links = pip_find_links(environ, pip_config_files(environ))
    if links:
        environ["UV_FIND_LINKS"] = links
    return links


def inputs_digest(args: Iterable[str], files: Iterable[Path], trees: Iterable[Path]) -> str:
    """A digest of what an environment is built from: install arguments, files, source trees."""
    digest = hashlib.sha256()
    for arg in args:
        digest.update(b"arg\0" + arg.encode() + b"\0")
    for path in files:
        digest.update(b"file\0" + str(path).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    for tree in trees:
        for path in sorted(
            p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ):
            digest.update(b"tree\0" + str(path.relative_to(tree)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_matches(env_dir: Path, digest: str) -> bool:
    stamp = env_dir / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == digest


def write_stamp(env_dir: Path, digest: str) -> None:
    (env_dir / STAMP_NAME).write_text(digest + "\n")


def install_inputs(local: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files and source trees whose change should rebuild an environment."""
    files = [ROOT / "pyproject.toml", CONSTRAINTS] + [path / "pyproject.toml" for path in local]
    return files, [path / "src" for path in local]


def install(
    session: nox.Session, requirements: Iterable[str], extra_files: Iterable[Path] = ()
) -> None:
    """Install requirements (workspace packages as local, non-editable copies) once.

    Reinstalls only when the requirements, the constraints, a pyproject.toml or the
    source of an included workspace package changed since the last install.
    """
    local, external = split_requirements(requirements)
    files, trees = install_inputs(local)
    args = [str(path) for path in local] + external
    digest = inputs_digest(args, [*files, *extra_files], trees)
    env_dir = Path(session.virtualenv.location)
    if stamp_matches(env_dir, digest):
        session.log("environment is up to date; skipping install")
        return
    session.install("-c", str(CONSTRAINTS), *args)
    if local:
        names = [
            nox.project.load_toml(path / "pyproject.toml")["project"]["name"] for path in local
        ]
        if session.venv_backend == "uv":
            reinstall = [flag for name in names for flag in ("--reinstall-package", name)]
        else:
            reinstall = ["--force-reinstall"]
        session.install("--no-deps", *reinstall, *map(str, local))
    write_stamp(env_dir, digest)


def local_requirements(local: Iterable[Path], root: Path = ROOT) -> list[str]:
    """Third-party requirements declared by the given workspace package folders."""
    members = workspace_packages(root)
    names = {path: name for name, path in members.items()}
    requirements: list[str] = []
    for path in local:
        for requirement in package_dependencies(names[path], root):
            if requirement_name(requirement) not in members and requirement not in requirements:
                requirements.append(requirement)
    return requirements


def tooling_requirements(root: Path = ROOT) -> list[str]:
    """What the root tests/ need: every script's declared dependencies, plus nox."""
    requirements: list[str] = []
    for category in SCRIPT_CATEGORIES:
        for script in category_scripts(category, root).values():
            for requirement in script_metadata(script).get("dependencies", []):
                if requirement not in requirements:
                    requirements.append(requirement)
    return [*requirements, "nox[uv]>=2025.2.9"]


def coverage_target(path: str) -> str | None:
    """The test target a measured file belongs to ("tooling" for scripts/)."""
    parts = Path(path).parts
    if len(parts) > 1 and parts[0] == "packages":
        return parts[1]
    return "tooling" if parts and parts[0] == "scripts" else None


def coverage_by_target(report: Mapping) -> dict[str, float]:
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


def uv_binary() -> str | None:
    """The uv executable nox would use, or None."""
    has_uv, path, *_ = nox.virtualenv.find_uv()
    return path if has_uv else None


def cuda_host() -> bool:
    """Whether this host exposes an NVIDIA device (checked without importing torch)."""
    if Path("/dev/nvidia0").exists():
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    result = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and "GPU" in result.stdout


def host_cuda_python(candidates: Iterable[str] = ("python3", "python")) -> str | None:
    """An interpreter on PATH whose torch sees a CUDA device, if any."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    for name in candidates:
        path = shutil.which(name)
        if (
            path
            and subprocess.run([path, "-c", probe], capture_output=True, check=False).returncode
            == 0
        ):
            return path
    return None


def script_environment(
    session: nox.Session,
    script: Path,
    *,
    python: str | None = None,
    system_site_packages: bool = False,
    exclude: Iterable[str] = (),
) -> Path:
    """Build (or reuse) the environment of one script from its PEP 723 dependencies.

    Workspace packages named there install from packages/; ``exclude`` drops requirements
    the host already provides (the host's CUDA torch). Returns the environment's python.
    """
    skip = {normalize(name) for name in exclude}
    requirements = [
        r
        for r in script_metadata(script).get("dependencies", [])
        if requirement_name(r) not in skip
    ]
    local, external = split_requirements(requirements)
    env_dir = ROOT / ".nox" / f"script-{script.parent.name}-{script.stem}"
    files, trees = install_inputs(local)
    digest = inputs_digest(
        [str(system_site_packages), python or "", *map(str, local), *external],
        [*files, script],
        trees,
    )
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env_python = bin_dir / "python"
    if env_python.exists() and stamp_matches(env_dir, digest):
        return env_python
    uv = uv_binary()
    base = python or sys.executable
    site = ["--system-site-packages"] if system_site_packages else []
    if uv:
        session.run(
            uv, "venv", "--clear", "--quiet", "--python", base, *site, str(env_dir), external=True
        )
        pip = [uv, "pip", "install", "--quiet", "--python", str(env_python)]
    else:
        session.run(base, "-m", "venv", "--clear", *site, str(env_dir), external=True)
        pip = [str(env_python), "-m", "pip", "install", "--quiet"]
    reinstall = ["--reinstall"] if uv else ["--force-reinstall"]
    if skip:
        # The host provides these (its CUDA torch): workspace packages go in without their
        # dependencies, and their other requirements are installed explicitly.
        external += [r for r in local_requirements(local) if requirement_name(r) not in skip]
        if external:
            session.run(*pip, "-c", str(CONSTRAINTS), *dict.fromkeys(external), external=True)
        if local:
            session.run(*pip, "--no-deps", *reinstall, *map(str, local), external=True)
    elif local or external:
        session.run(*pip, "-c", str(CONSTRAINTS), *map(str, local), *external, external=True)
        if local:
            session.run(*pip, "--no-deps", *reinstall, *map(str, local), external=True)
    write_stamp(env_dir, digest)
    return env_python


def run_category(session: nox.Session, category: str) -> None:
    """List a category's scripts, or run ``nox -s <category> -- <script> [args]``."""
    if not session.posargs:
        scripts = category_scripts(category)
        session.log(f"scripts/{category}/ — run one with: nox -s {category} -- <script> [args]")
        width = max((len(name) for name in scripts), default=0)
        for name, path in scripts.items():
            print(f"  {name:<{width}}  {script_description(path)}")
        return
    name, *args = session.posargs
    try:
        script = find_script(category, name)
    except ValueError as exc:
        session.error(str(exc))
    python = script_environment(session, script)
    session.run(str(python), str(script), *args, external=True)


forward_find_links(os.environ)


# --- sessions --------------------------------------------------------------------------------


@nox.session(allow_parallel=True)
@nox.parametrize("target", list(COVERAGE_MINIMUM), ids=list(COVERAGE_MINIMUM))
def tests(session: nox.Session, target: str) -> None:
    """Run one package's tests in an environment holding only it, with coverage."""
    test_group = nox.project.dependency_groups(PYPROJECT, "test")
    if f"test-{target}" in PYPROJECT.get("dependency-groups", {}):
        test_group = (*test_group, *nox.project.dependency_groups(PYPROJECT, f"test-{target}"))
    if target == "tooling":
        install(session, [*tooling_requirements(), *test_group])
        test_dir, cov = ROOT / "tests", ["--cov=scripts"]
    else:
        install(session, [target, *test_group])
        test_dir = workspace_packages()[target] / "tests"
        cov = [f"--cov={target.replace('-', '_')}"]
    session.run(
        "pytest",
        str(test_dir),
        *cov,
        "--cov-report=term-missing:skip-covered",
        f"--cov-fail-under={COVERAGE_MINIMUM[target]}",
        *session.posargs,
        env={"COVERAGE_FILE": str(ROOT / f".coverage.{target}")},
    )


@nox.session(requires=["tests"], default=True)
def coverage(session: nox.Session) -> None:
    """Combine the tests' coverage data: per-package table, htmlcov/ and coverage.xml."""
    install(session, nox.project.dependency_groups(PYPROJECT, "coverage"))
    data = sorted(str(path) for path in ROOT.glob(".coverage.*"))
    if not data:
        session.error("no coverage data; run `nox -s tests` first")
    env = {"COVERAGE_FILE": str(ROOT / ".coverage")}
    session.run("coverage", "combine", "--keep", "--quiet", *data, env=env)
    summary = ROOT / ".nox" / "coverage.json"
    session.run("coverage", "json", "--quiet", "-o", str(summary), env=env)
    session.log("per-target coverage (minimum in brackets):")
    for target, percent in coverage_by_target(json.loads(summary.read_text())).items():
        flag = "" if percent >= COVERAGE_MINIMUM[target] else "  BELOW MINIMUM"
        session.log(f"  {target:<18} {percent:6.1f}%  [{COVERAGE_MINIMUM[target]}%]{flag}")
    session.run("coverage", "report", "--skip-covered", env=env)
    session.run("coverage", "html", "--quiet", env=env)
    session.run("coverage", "xml", "--quiet", env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """Run every pre-commit hook (ruff, formatting, file checks, config validation)."""
    install(
        session,
        nox.project.dependency_groups(PYPROJECT, "lint"),
        [ROOT / ".pre-commit-config.yaml"],
    )
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session(venv_backend="none", default=False)
def clean(session: nox.Session) -> None:
    """Remove what tools generate (caches, coverage, builds); `-- --all` also .nox/."""
    session.run(
        sys.executable, str(SCRIPTS / "maintenance" / "clean.py"), *session.posargs, external=True
    )


@nox.session(venv_backend="none", default=False)
def gpu_smoke(session: nox.Session) -> None:
    """Check a CUDA host (versions, matmul, attention, compile, model); skips without one."""
    script = SCRIPTS / "testing" / "gpu_smoke.py"
    if not cuda_host():
        session.log("no NVIDIA device on this host; running the check without installing torch")
        session.run(sys.executable, str(script), *session.posargs, external=True)
        return
    host_python = host_cuda_python()
    if host_python:
        session.log(f"using the host's CUDA torch from {host_python}")
        python = script_environment(
            session, script, python=host_python, system_site_packages=True, exclude=["torch"]
        )
    else:
        session.log("no CUDA torch on this host; installing the CUDA build from the index")
        os.environ.pop("UV_FIND_LINKS", None)
        python = script_environment(session, script)
    session.run(str(python), str(script), *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def demo(session: nox.Session) -> None:
    """The main job: train the tiny model on synthetic data, then generate videos."""
    script = SCRIPTS / "dev" / "demo.py"
    python = script_environment(session, script)
    session.run(str(python), str(script), *session.posargs, external=True)


def _category_session(category: str) -> None:
    def run(session: nox.Session) -> None:
        run_category(session, category)

    run.__doc__ = f"List scripts/{category}/, or run one: nox -s {category} -- <script> [args]."
    run.__name__ = category
    nox.session(name=category, venv_backend="none", default=False)(run)


for _category in SCRIPT_CATEGORIES:
    _category_session(_category)
