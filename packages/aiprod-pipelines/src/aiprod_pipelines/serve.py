"""``aiprod-serve``'s entry point: the HTTP server, when the ``server`` extra is installed.

The HTTP server (FastAPI on uvicorn, Prometheus metrics, the job store's and the object
storage's drivers) is an optional part of aiprod-pipelines, so that what only generates or
trains (``aiprod-generate``, the trainer) does not install a web stack::

    pip install 'aiprod-pipelines[server]'

Without it ``aiprod-serve`` ends in one line naming the extra, and importing
``aiprod_pipelines.server`` raises :class:`ServerNotInstalledError` saying the same, instead
of an ImportError about a module the user never asked for.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from aiprod_core.errors import AiprodError

#: What to install for the server.
SERVER_EXTRA = "aiprod-pipelines[server]"
#: The modules the server cannot start without (those of the extra's web stack).
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "prometheus_client")
#: ``aiprod-serve``'s exit status when the extra is missing (as for missing weights).
EXIT_NOT_INSTALLED = 2


class ServerNotInstalledError(AiprodError, ImportError):
    """The ``server`` extra of aiprod-pipelines is not installed."""


def missing_server_modules() -> list[str]:
    """The server's modules that cannot be imported here (empty when the extra is installed)."""
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def require_server() -> None:
    """Raise :class:`ServerNotInstalledError` naming the extra when a module of it is missing."""
    missing = missing_server_modules()
    if missing:
        raise ServerNotInstalledError(
            f"the HTTP server is not installed (no {', '.join(missing)}): install the "
            f"server extra with pip install '{SERVER_EXTRA}'"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``aiprod-serve``: check the extra, then run :func:`aiprod_pipelines.server.cli.main`."""
    try:
        require_server()
    except ServerNotInstalledError as exc:
        print(f"aiprod-serve: {exc}", file=sys.stderr)
        return EXIT_NOT_INSTALLED
    from aiprod_pipelines.server.cli import main as serve

    return serve(argv)
