"""The listening socket of ``aiprod-serve``: connections it accepts send without delay."""

from __future__ import annotations

import asyncio
import socket

from aiprod_pipelines.server.listener import open_listener


def test_accepted_connections_have_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY on accepted TCP sockets (as uvicorn's own would have), so a
    response written in parts is not held back by Nagle's algorithm for the client's ACK."""
    listener = open_listener("127.0.0.1", 0)
    assert listener.proto == socket.IPPROTO_TCP

    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Accept, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()

    assert asyncio.run(accept_one()) != 0
