"""Environments built from the lock, reused until what they were built from changes.

Every environment installs with ``-c constraints.txt`` (the lock, exported), then its
workspace packages as local non-editable copies, then is checked against ``uv.lock``: a
version that is not the locked one fails the session with the fix. A stamp (a digest of
the install arguments, the lock, every relevant ``pyproject.toml`` and the installed
packages' sources) lets a rerun skip installing when nothing changed.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from aiprod_dev.hosts import cuda_host, host_cuda_python, install_environment, uv_binary
from aiprod_dev.lock import CONSTRAINTS, FIX, LOCK, locked_versions, matches_lock
from aiprod_dev.workspace import (
    ROOT,
    load_toml,
    local_requirements,
    requirement_name,
    script_metadata,
    split_requirements,
)

if TYPE_CHECKING:
    import nox

STAMP_NAME = ".aiprod-inputs.sha256"


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


def install_inputs(local: Iterable[Path], root: Path = ROOT) -> tuple[list[Path], list[Path]]:
    """Files and source trees whose change should rebuild an environment."""
    local = list(local)
    files = [root / "pyproject.toml", root / LOCK, root / CONSTRAINTS]
    return files + [path / "pyproject.toml" for path in local], [path / "src" for path in local]


def site_packages(env_dir: Path) -> Path | None:
    """The site-packages folder of a virtual environment, if it has one."""
    found = sorted(env_dir.glob("lib/python*/site-packages")) + sorted(
        env_dir.glob("Lib/site-packages")
    )
    return found[0] if found else None


def installed_distributions(env_dir: Path) -> dict[str, str]:
    """Canonical names of the distributions in an environment mapped to their versions."""
    site = site_packages(env_dir)
    if site is None:
        return {}
    found = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            found[requirement_name(name)] = dist.version
    return found


def check_against_lock(env_dir: Path, root: Path = ROOT, skip: Iterable[str] = ()) -> list[str]:
    """Installed versions that differ from ``uv.lock`` (``skip``: names the host provides)."""
    skipped = {requirement_name(name) for name in skip}
    installed = {
        name: version
        for name, version in installed_distributions(env_dir).items()
        if name not in skipped
    }
    return matches_lock(installed, locked_versions((root / LOCK).read_text(encoding="utf-8")))


def torch_build(env_dir: Path) -> str | None:
    """A one-line description of the torch an environment holds, or None without torch."""
    version = installed_distributions(env_dir).get("torch")
    if version is None:
        return None
    local = version.partition("+")[2]
    build = "CPU build" if local == "cpu" else (f"{local} build" if local else "PyPI build")
    return f"torch {version} ({build})"


def install(
    session: nox.Session,
    requirements: Iterable[str],
    extra_files: Iterable[Path] = (),
    root: Path = ROOT,
) -> None:
    """Install requirements at their locked versions (workspace packages as local copies) once.

    Reinstalls only when the requirements, the lock, a pyproject.toml or the source of an
    included workspace package changed since the last install.
    """
    local, external = split_requirements(requirements, root)
    files, trees = install_inputs(local, root)
    args = [str(path) for path in local] + external
    digest = inputs_digest(args, [*files, *extra_files], trees)
    env_dir = Path(session.virtualenv.location)
    if stamp_matches(env_dir, digest):
        session.log("environment is up to date; skipping install")
        return
    env = install_environment(os.environ)
    session.install("-c", str(root / CONSTRAINTS), *args, env=env)
    if local:
        names = [load_toml(path / "pyproject.toml")["project"]["name"] for path in local]
        if session.venv_backend == "uv":
            reinstall = [flag for name in names for flag in ("--reinstall-package", name)]
        else:
            reinstall = ["--force-reinstall"]
        session.install("--no-deps", *reinstall, *map(str, local), env=env)
    if problems := check_against_lock(env_dir, root):
        session.error(
            f"the environment does not hold the locked versions: {'; '.join(problems)}; {FIX}"
        )
    if build := torch_build(env_dir):
        session.log(build)
    write_stamp(env_dir, digest)


def script_run_environment(root: Path = ROOT) -> dict[str, str]:
    """Variables a script runs with: the repository root on the import path for ``aiprod_dev``."""
    return {"PYTHONPATH": str(root)}


def script_environment(
    session: nox.Session,
    script: Path,
    *,
    python: str | None = None,
    system_site_packages: bool = False,
    exclude: Iterable[str] = (),
    environ: Mapping[str, str | None] | None = None,
    root: Path = ROOT,
) -> Path:
    """Build (or reuse) the environment of one script from its PEP 723 dependencies."""
    return environment(
        session,
        f"script-{script.parent.name}-{script.stem}",
        script_metadata(script).get("dependencies", []),
        extra_files=[script],
        python=python,
        system_site_packages=system_site_packages,
        exclude=exclude,
        environ=environ,
        root=root,
    )


def environment(
    session: nox.Session,
    name: str,
    requirements: Iterable[str],
    *,
    extra_files: Iterable[Path] = (),
    python: str | None = None,
    system_site_packages: bool = False,
    exclude: Iterable[str] = (),
    environ: Mapping[str, str | None] | None = None,
    location: Path | None = None,
    editable: bool = False,
    root: Path = ROOT,
) -> Path:
    """Build (or reuse) ``.nox/<name>`` (or ``location``), an environment outside nox's own.

    Workspace packages install from packages/ (``editable``: as editable installs, so
    source changes apply without reinstalling); ``exclude`` drops requirements the host
    already provides (the host's CUDA torch, seen through ``system_site_packages``).
    ``environ`` overrides variables for the installer (``{"UV_FIND_LINKS": None}`` to ignore
    a local CPU wheel). Returns the environment's python.
    """
    skip = {requirement_name(r) for r in exclude}
    requirements = [r for r in requirements if requirement_name(r) not in skip]
    local, external = split_requirements(requirements, root)
    env_dir = location or root / ".nox" / name
    files, trees = install_inputs(local, root)
    digest = inputs_digest(
        [str(system_site_packages), str(editable), python or "", *map(str, local), *external],
        [*files, *extra_files],
        trees,
    )
    env_python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    if env_python.exists() and stamp_matches(env_dir, digest):
        return env_python
    env: dict[str, str | None] = {**install_environment(os.environ), **(environ or {})}
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
    constraints = ["-c", str(root / CONSTRAINTS)]
    if skip:
        # The host provides these (its CUDA torch): workspace packages go in without their
        # dependencies, and their other requirements are installed explicitly.
        external += [r for r in local_requirements(local, root) if requirement_name(r) not in skip]
        if external:
            session.run(*pip, *constraints, *dict.fromkeys(external), external=True, env=env)
        if local:
            session.run(*pip, "--no-deps", *reinstall, *map(str, local), external=True, env=env)
    elif editable:
        packages = [flag for path in local for flag in ("-e", str(path))]
        session.run(*pip, *constraints, *packages, *external, external=True, env=env)
    elif local or external:
        session.run(*pip, *constraints, *map(str, local), *external, external=True, env=env)
        if local:
            session.run(*pip, "--no-deps", *reinstall, *map(str, local), external=True, env=env)
    if problems := check_against_lock(env_dir, root, skip):
        session.error(f"{name}: not the locked versions: {'; '.join(problems)}; {FIX}")
    write_stamp(env_dir, digest)
    return env_python


def cuda_environment(session: nox.Session, build: Callable[..., Path]) -> Path:
    """An environment for a CUDA check, built by ``build``; the session skips without a GPU.

    With a CUDA torch on the host, ``build`` reuses it (system site packages, torch not
    installed again); otherwise the CUDA build is installed from the index, ignoring a
    local CPU wheel. ``--require-gpu`` among the session's arguments turns the skip into
    a failure.
    """
    if not cuda_host():
        message = "no CUDA device on this host (no /dev/nvidia0, and nvidia-smi lists no GPU)"
        if "--require-gpu" in session.posargs:
            session.error(message)
        session.skip(f"{message}; nothing to check here")
    host_python = host_cuda_python()
    if host_python:
        session.log(f"using the host's CUDA torch from {host_python}")
        return build(python=host_python, system_site_packages=True, exclude=["torch"])
    session.log("no CUDA torch on this host; installing the CUDA build from the index")
    return build(environ={"UV_FIND_LINKS": None})
