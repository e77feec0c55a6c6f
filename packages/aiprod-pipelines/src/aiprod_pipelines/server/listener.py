"""The listening socket of ``aiprod-serve``, bound before the model is announced or loaded.

Binding first turns "address already in use" into one clear line (and exit 2) instead of
a model load followed by uvicorn's startup failure; the bound socket is then handed to
uvicorn, so nothing can take the port in between.
"""

from __future__ import annotations

import errno
import socket

from aiprod_core.errors import AiprodError

#: Backlog of the listening socket (uvicorn's default).
BACKLOG = 2048
PORT_HINT = "choose another port with --port or AIPROD_SERVING__PORT (serving.port in config)"
HOST_HINT = "choose another address with --host or AIPROD_SERVING__HOST (serving.host in config)"
#: Longest host echoed back in an error message.
MAX_HOST_SHOWN = 100


class ListenError(AiprodError):
    """The server cannot listen on the address asked for; the message names the flag to change."""


def open_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, as uvicorn would bind it.

    ``SO_REUSEADDR`` is set as uvicorn does, so a port left in TIME_WAIT by a previous
    run can be reused while a port another process listens on cannot. The protocol is
    named (``IPPROTO_TCP``, as ``getaddrinfo`` gives it when uvicorn binds by itself):
    asyncio sets ``TCP_NODELAY`` only on accepted sockets of that protocol, and without it
    a response written in parts (a streamed download) waits about 40 ms for the client's
    delayed ACK.

    Raises:
        ListenError: the address is in use, not available here, or not allowed.
    """
    shown = f"{_shorten(host)}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except (OSError, UnicodeError) as exc:
        sock.close()
        raise ListenError(f"cannot listen on {shown}: {_reason(exc)}") from None
    return sock


def _reason(exc: OSError | UnicodeError) -> str:
    """What went wrong and which flag changes it."""
    if isinstance(exc, socket.gaierror | UnicodeError):
        return f"unknown host ({exc}); {HOST_HINT}"
    if exc.errno == errno.EADDRINUSE:
        return f"address already in use; {PORT_HINT}"
    if exc.errno == errno.EACCES:
        return f"permission denied (ports below 1024 need privileges); {PORT_HINT}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"this machine has no such address; {HOST_HINT}"
    return f"{exc.strerror or exc}; {HOST_HINT}, or the port with --port"


def _shorten(host: str) -> str:
    if len(host) <= MAX_HOST_SHOWN:
        return host
    return host[:MAX_HOST_SHOWN] + f"... ({len(host)} characters)"
