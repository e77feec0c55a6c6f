"""What this machine provides: pip's find-links (a local CPU torch), uv, a CUDA device.

Functions take the process environment as an argument and return new mappings; none of
them changes ``os.environ``.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's config files in the order pip reads them (later ones win)."""
    home = Path(environ.get("HOME", str(Path.home())))
    xdg = environ.get("XDG_CONFIG_HOME", str(home / ".config"))
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", Path(xdg) / "pip" / "pip.conf"]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return [path for path in files if path.is_file()]


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


def install_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables to add when uv installs: pip's find-links passed on as ``UV_FIND_LINKS``.

    uv does not read pip's configuration; this is how a host that provides a local CPU
    build of torch keeps uv from downloading PyPI's multi-GB CUDA build. An explicit
    ``UV_FIND_LINKS`` is left alone (nothing to add).
    """
    if environ.get("UV_FIND_LINKS"):
        return {}
    links = pip_find_links(environ, pip_config_files(environ))
    return {"UV_FIND_LINKS": links} if links else {}


def uv_binary() -> str | None:
    """The uv executable: the ``uv`` package's own binary when importable, else one on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return shutil.which("uv")


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
        if path and subprocess.run([path, "-c", probe], capture_output=True).returncode == 0:
            return path
    return None
