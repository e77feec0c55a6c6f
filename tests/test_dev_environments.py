"""aiprod_dev.environments: reuse stamps, the lock check of installed versions, CPU torch."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from aiprod_dev import environments, hosts


def fake_env(root: Path, dists: dict[str, str]) -> Path:
    site = root / "env" / "lib" / "python3.11" / "site-packages"
    for name, version in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root / "env"


def test_inputs_digest_tracks_every_input(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("a = 1\n")
    config = tmp_path / "pyproject.toml"
    config.write_text("[project]\n")

    def digest() -> str:
        return environments.inputs_digest(["pytest"], [config], [source])

    first = digest()
    assert digest() == first
    (source / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"ignored")
    assert digest() == first
    (source / "pkg" / "mod.py").write_text("a = 2\n")
    second = digest()
    assert second != first
    config.write_text("[project]\nname = 'x'\n")
    assert digest() != second
    assert environments.inputs_digest(["pytest>=9"], [config], [source]) != digest()
    config.unlink()
    assert digest() != second


def test_stamp_round_trip(tmp_path: Path) -> None:
    assert not environments.stamp_matches(tmp_path, "abc")
    environments.write_stamp(tmp_path, "abc")
    assert environments.stamp_matches(tmp_path, "abc")
    assert not environments.stamp_matches(tmp_path, "abd")


def test_install_inputs_include_the_lock(repo_root: Path) -> None:
    core = repo_root / "packages" / "aiprod-core"
    files, trees = environments.install_inputs([core], repo_root)
    names = [path.relative_to(repo_root).as_posix() for path in files]
    assert names == [
        "pyproject.toml",
        "uv.lock",
        "constraints.txt",
        "packages/aiprod-core/pyproject.toml",
    ]
    assert trees == [core / "src"]


def test_installed_distributions_and_the_lock(tmp_path: Path, repo_root: Path) -> None:
    env = fake_env(tmp_path, {"torch": "2.13.0+cpu", "PyYAML": "6.0.4", "numpy": "1.0.0"})
    assert environments.installed_distributions(env) == {
        "torch": "2.13.0+cpu",
        "pyyaml": "6.0.4",
        "numpy": "1.0.0",
    }
    problems = environments.check_against_lock(env, repo_root)
    assert len(problems) == 1
    assert problems[0].startswith("numpy 1.0.0 is installed, uv.lock has ")
    assert environments.check_against_lock(env, repo_root, skip=["NumPy"]) == []
    assert environments.torch_build(env) == "torch 2.13.0+cpu (CPU build)"
    assert environments.installed_distributions(tmp_path / "nothing") == {}


def test_torch_build_names(tmp_path: Path) -> None:
    assert environments.torch_build(fake_env(tmp_path / "a", {"torch": "2.13.0"})) == (
        "torch 2.13.0 (PyPI build)"
    )
    assert environments.torch_build(fake_env(tmp_path / "b", {"torch": "2.13.0+cu128"})) == (
        "torch 2.13.0+cu128 (cu128 build)"
    )
    assert environments.torch_build(fake_env(tmp_path / "c", {"numpy": "2.0"})) is None


class SkippingSession:
    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs

    def skip(self, message: str) -> None:
        raise RuntimeError(f"skip: {message}")

    def error(self, message: str) -> None:
        raise RuntimeError(f"error: {message}")


def test_cuda_environment_without_a_device_names_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(environments, "cuda_host", lambda: False)

    def build(**kwargs: object) -> Path:
        raise AssertionError("nothing is installed without a CUDA device")

    with pytest.raises(RuntimeError, match=r"^skip: no CUDA device on this host") as skipped:
        environments.cuda_environment(SkippingSession([]), build)  # type: ignore[arg-type]  # stands in for nox.Session
    assert "torch" not in str(skipped.value), "the reason is the device, not a missing torch"
    with pytest.raises(RuntimeError, match=r"^error: no CUDA device on this host"):
        environments.cuda_environment(SkippingSession(["--require-gpu"]), build)  # type: ignore[arg-type]  # stands in for nox.Session


def test_cuda_environment_prefers_the_hosts_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environments, "cuda_host", lambda: True)
    monkeypatch.setattr(environments, "host_cuda_python", lambda: "/usr/bin/python3")
    session = type("S", (), {"posargs": [], "log": lambda self, m: None})()
    calls: list[dict[str, object]] = []
    environments.cuda_environment(session, lambda **kw: calls.append(kw) or Path("/p"))  # type: ignore[arg-type]  # stands in for nox.Session
    assert calls == [
        {"python": "/usr/bin/python3", "system_site_packages": True, "exclude": ["torch"]}
    ]
    monkeypatch.setattr(environments, "host_cuda_python", lambda: None)
    environments.cuda_environment(session, lambda **kw: calls.append(kw) or Path("/p"))  # type: ignore[arg-type]  # stands in for nox.Session
    assert calls[-1] == {"environ": {"UV_FIND_LINKS": None}}, (
        "the CUDA build, not a local CPU wheel"
    )


@pytest.mark.slow
def test_cpu_torch_from_find_links(tmp_path: Path, repo_root: Path) -> None:
    """On a host whose pip has find-links to a CPU wheel, the locked torch is that CPU build."""
    extra = hosts.install_environment(os.environ)
    if not extra and not os.environ.get("UV_FIND_LINKS"):
        pytest.skip("this host's pip has no find-links; the CPU path is proven where it does")
    uv = hosts.uv_binary()
    assert uv is not None
    env = {**os.environ, **extra}
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True, env=env)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-c", str(repo_root / "constraints.txt"), "torch"],
        check=True, env=env,
    )  # fmt: skip
    installed = environments.installed_distributions(venv)
    assert installed["torch"].endswith("+cpu")
    assert not [name for name in installed if name.startswith(("nvidia", "cuda", "triton"))]
    assert environments.check_against_lock(venv, repo_root) == []


@pytest.fixture
def workspace_root(tmp_path: Path, uv_lock_text: Callable[..., str]) -> Path:
    """A one-package workspace (alpha needs numpy and torch) with a lock and constraints."""
    root = tmp_path / "ws"
    package = root / "packages" / "alpha"
    (package / "src" / "alpha").mkdir(parents=True)
    (package / "src" / "alpha" / "__init__.py").write_text("")
    (package / "pyproject.toml").write_text(
        '[project]\nname = "alpha"\nversion = "0.1.0"\ndependencies = ["numpy>=2", "torch>=2"]\n'
    )
    (root / "pyproject.toml").write_text("[tool.uv.workspace]\nmembers = ['packages/*']\n")
    pypi = "https://pypi.org/simple"
    (root / "uv.lock").write_text(
        uv_lock_text(("alpha", "0.1.0", "packages/alpha"), ("numpy", "2.4.6", pypi),
                  ("torch", "2.13.0", pypi))
    )  # fmt: skip
    (root / "constraints.txt").write_text("numpy==2.4.6\ntorch==2.13.0\n")
    return root


class InstallingSession:
    """Records what a session would run; "installs" by writing dist-info folders."""

    def __init__(self, env_dir: Path, versions: dict[str, str], backend: str = "uv") -> None:
        self.virtualenv = type("V", (), {"location": str(env_dir)})()
        self.venv_backend = backend
        self.versions = versions
        self.commands: list[tuple[str, ...]] = []
        self.envs: list[dict[str, object]] = []
        self.logs: list[str] = []

    def _install(self, env_dir: Path, args: tuple[str, ...]) -> None:
        for name, version in self.versions.items():
            if "-c" in args or any(name in arg for arg in args):  # -c: with dependencies
                info = (
                    env_dir / "lib" / "python3.11" / "site-packages" / f"{name}-{version}.dist-info"
                )
                info.mkdir(parents=True, exist_ok=True)
                (info / "METADATA").write_text(
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                )

    def install(self, *args: str, env: dict[str, object]) -> None:
        self.commands.append(("install", *args))
        self.envs.append(env)
        self._install(Path(self.virtualenv.location), args)

    def run(self, *args: str, external: bool = False, env: dict[str, object] | None = None) -> bool:
        self.commands.append(args)
        self.envs.append(env or {})
        if "venv" in args:
            Path(args[-1]).mkdir(parents=True, exist_ok=True)
            (Path(args[-1]) / "bin").mkdir(exist_ok=True)
            (Path(args[-1]) / "bin" / "python").write_text("")
        elif "install" in args:
            python = Path(args[args.index("--python") + 1] if "--python" in args else args[0])
            self._install(python.parent.parent, args)
        return True

    def log(self, message: str) -> None:
        self.logs.append(message)

    def error(self, message: str) -> None:
        raise RuntimeError(message)


def test_install_uses_the_lock_and_is_reused(
    tmp_path: Path, workspace_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = workspace_root
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels")
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    env_dir = tmp_path / "env"
    session = InstallingSession(
        env_dir, {"numpy": "2.4.6", "torch": "2.13.0+cpu", "alpha": "0.1.0"}
    )
    environments.install(session, ["alpha", "pytest>=8"], root=root)  # type: ignore[arg-type]  # stands in for nox.Session
    first, second = session.commands
    assert first[:3] == ("install", "-c", str(root / "constraints.txt"))
    assert first[3:] == (str(root / "packages" / "alpha"), "pytest>=8")
    assert second[1:] == (
        "--no-deps",
        "--reinstall-package",
        "alpha",
        str(root / "packages" / "alpha"),
    )
    assert session.envs[0] == {"UV_FIND_LINKS": "/wheels"}
    assert session.logs == ["torch 2.13.0+cpu (CPU build)"]

    again = InstallingSession(env_dir, {})
    environments.install(again, ["alpha", "pytest>=8"], root=root)  # type: ignore[arg-type]  # stands in for nox.Session
    assert again.commands == []
    assert again.logs == ["environment is up to date; skipping install"]
    (root / "packages" / "alpha" / "src" / "alpha" / "__init__.py").write_text("x = 1\n")
    changed = InstallingSession(env_dir, {"alpha": "0.1.0"}, backend="virtualenv")
    environments.install(changed, ["alpha", "pytest>=8"], root=root)  # type: ignore[arg-type]  # stands in for nox.Session
    assert changed.commands[1][1:3] == ("--no-deps", "--force-reinstall")


def test_install_refuses_versions_the_lock_does_not_hold(
    tmp_path: Path, workspace_root: Path
) -> None:
    root = workspace_root
    session = InstallingSession(tmp_path / "env", {"numpy": "1.26.0"})
    with pytest.raises(RuntimeError, match=r"numpy 1\.26\.0 is installed, uv\.lock has 2\.4\.6"):
        environments.install(session, ["numpy"], root=root)  # type: ignore[arg-type]  # stands in for nox.Session
    assert not environments.stamp_matches(tmp_path / "env", "anything")


def test_environment_builds_once_and_can_be_editable(
    tmp_path: Path, workspace_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = workspace_root
    monkeypatch.setattr(environments, "uv_binary", lambda: "/bin/uv")
    monkeypatch.setattr(environments, "install_environment", lambda environ: {})
    versions = {"numpy": "2.4.6", "torch": "2.13.0", "alpha": "0.1.0"}
    session = InstallingSession(tmp_path / "unused", versions)
    python = environments.environment(session, "dev", ["alpha"], root=root, editable=True,  # type: ignore[arg-type]  # stands in for nox.Session
                                      location=root / ".venv")  # fmt: skip
    assert python == root / ".venv" / "bin" / "python"
    venv, install = session.commands
    assert venv[:2] == ("/bin/uv", "venv")
    assert install[-2:] == ("-e", str(root / "packages" / "alpha"))
    again = InstallingSession(tmp_path / "unused", versions)
    environments.environment(
        again, "dev", ["alpha"], root=root, editable=True, location=root / ".venv"
    )  # type: ignore[arg-type]  # stands in for nox.Session
    assert again.commands == []


def test_environment_leaves_the_hosts_torch_alone(
    tmp_path: Path, workspace_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = workspace_root
    monkeypatch.setattr(environments, "uv_binary", lambda: None)
    monkeypatch.setattr(
        environments, "install_environment", lambda environ: {"UV_FIND_LINKS": "/w"}
    )
    session = InstallingSession(tmp_path / "unused", {"numpy": "2.4.6", "alpha": "0.1.0"})
    environments.environment(
        session, "gpu-tests", ["alpha"], root=root, python="/usr/bin/python3",  # type: ignore[arg-type]  # stands in for nox.Session
        system_site_packages=True, exclude=["torch"], environ={"UV_FIND_LINKS": None},
    )  # fmt: skip
    venv, deps, local = session.commands
    assert venv[:2] == ("/usr/bin/python3", "-m")
    assert "--system-site-packages" in venv
    assert deps[-1] == "numpy>=2"
    assert not any("torch" in arg for arg in deps)
    assert local[-3:] == ("--no-deps", "--force-reinstall", str(root / "packages" / "alpha"))
    assert session.envs[1] == {"UV_FIND_LINKS": None}, "a CUDA host ignores local CPU wheels"
