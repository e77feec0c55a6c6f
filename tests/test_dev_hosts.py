"""aiprod_dev.hosts: pip's find-links passed on to uv without touching os.environ; CUDA probes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiprod_dev import hosts


def test_pip_find_links_prefers_environment(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /wheels/a\n  /wheels/b\n")
    assert hosts.pip_find_links({"PIP_FIND_LINKS": "/env"}, [conf]) == "/env"
    assert hosts.pip_find_links({}, [conf]) == "/wheels/a /wheels/b"
    broken = tmp_path / "broken.conf"
    broken.write_text("not an ini file")
    assert hosts.pip_find_links({}, [broken]) is None


def test_pip_config_files_order(tmp_path: Path) -> None:
    (tmp_path / ".pip").mkdir()
    (tmp_path / ".pip" / "pip.conf").write_text("[global]\n")
    explicit = tmp_path / "explicit.conf"
    explicit.write_text("[global]\n")
    files = hosts.pip_config_files({"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(explicit)})
    assert files[-2:] == [tmp_path / ".pip" / "pip.conf", explicit]


def test_install_environment_passes_find_links_on(tmp_path: Path) -> None:
    environ = {"PIP_FIND_LINKS": "/wheels", "HOME": str(tmp_path)}
    assert hosts.install_environment(environ) == {"UV_FIND_LINKS": "/wheels"}
    assert "UV_FIND_LINKS" not in environ, "the caller's mapping is never changed"
    explicit = {"UV_FIND_LINKS": "/mine", "PIP_FIND_LINKS": "/wheels"}
    assert hosts.install_environment(explicit) == {}


def test_install_environment_without_any(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts, "pip_config_files", lambda environ: [])
    assert hosts.install_environment({"HOME": str(tmp_path)}) == {}


def test_host_cuda_python_finds_nothing_without_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts.shutil, "which", lambda name: None)
    assert hosts.host_cuda_python() is None


def test_cuda_host_without_device_or_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts.Path, "exists", lambda self: False)
    monkeypatch.setattr(hosts.shutil, "which", lambda name: None)
    assert hosts.cuda_host() is False


def test_cuda_host_asks_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\n")
    smi.chmod(0o755)
    monkeypatch.setattr(hosts.Path, "exists", lambda self: False)
    monkeypatch.setattr(hosts.shutil, "which", lambda name: str(smi))
    assert hosts.cuda_host() is True


def test_uv_binary_is_runnable() -> None:
    uv = hosts.uv_binary()
    assert uv is not None
    assert os.access(uv, os.X_OK)
