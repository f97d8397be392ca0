"""The ``fedxmpp`` command's side of the admin socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.protocols import amp

# Seconds to wait for the server to accept the connection.
CONNECT_TIMEOUT = 5


class ServerNotRunning(Exception):
    """Nothing listens on the admin socket: no server runs with this configuration."""


class AdminSocketError(Exception):
    """The admin socket exists but cannot be used (the message says why)."""


async def call(reactor: Any, path: Path, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
    """Ask the server listening on *path* to carry out *command*; its answer."""
    if not path.exists():
        raise ServerNotRunning(str(path))
    endpoint = UNIXClientEndpoint(reactor, str(path), timeout=CONNECT_TIMEOUT)
    try:
        protocol = await connectProtocol(endpoint, amp.AMP())
    except ConnectionRefusedError:  # a socket file left behind by a server that died
        raise ServerNotRunning(str(path)) from None
    except ConnectError as e:
        if not path.exists():
            raise ServerNotRunning(str(path)) from None
        raise AdminSocketError(f"cannot use the admin socket {str(path)!r}: {e}") from None
    try:
        result: dict[str, Any] = await protocol.callRemote(command, **arguments)
        return result
    finally:
        protocol.transport.loseConnection()
