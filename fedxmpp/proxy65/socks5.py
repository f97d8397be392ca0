"""The proxy's side of one SOCKS5 connection (RFC 1928 as XEP-0065 §6 uses it).

Only what XEP-0065 needs: no authentication (method 0x00), CONNECT to a
"domain name" that is the stream's SHA-1 hash in hex, port 0.  Anything else gets
the SOCKS5 failure reply and the connection is closed.  Once its request is
accepted the connection waits for its peer and the activation; bytes a client
sends before that are held up to a small bound.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from fedxmpp.stream.transport import IStreamTransport

if TYPE_CHECKING:
    from fedxmpp.proxy65.relay import Relay
    from fedxmpp.proxy65.service import Proxy65

log = Logger()

VERSION = 5
NO_AUTH = 0
NO_ACCEPTABLE_METHOD = 0xFF
CONNECT = 1
DOMAIN = 3

SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

# The stream's DST.ADDR: SHA-1 in hex (XEP-0065 §5.3.2).
_HASH = re.compile(rb"[0-9a-f]{40}")
# The longest handshake message: a request with a 255-byte name.
MAX_HANDSHAKE = 4 + 1 + 255 + 2
# Bytes held for a client that sends before its stream is activated.
MAX_EARLY = 64 * 1024


class Socks5Connection(Protocol):
    """States: ``methods`` -> ``request`` -> ``waiting`` (for the peer and the
    activation) -> relaying (``relay`` set) -> ``closed``."""
    transport: IStreamTransport  # narrower than Twisted's ITransport | None; see stream/transport.py

    def __init__(self, proxy: Proxy65) -> None:
        self.proxy = proxy
        self.state = "methods"
        self.buffer = b""
        self.hash: str | None = None
        self.early = b""
        self.relay: Relay | None = None
        self.peer: Any = None

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()
        if not self.proxy.opened(self):
            self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.state = "closed"
        self.proxy.closed(self)

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.forward(self, data)
        elif self.state == "waiting":
            self.early += data
            if len(self.early) > MAX_EARLY:
                log.info("SOCKS5 client {peer} sent {n} bytes before activation; closing",
                         peer=self.peer, n=len(self.early))
                self.transport.loseConnection()
        elif self.state in ("methods", "request"):
            self.buffer += data
            if len(self.buffer) > MAX_HANDSHAKE:
                self._drop()
                return
            self._negotiate()

    def _negotiate(self) -> None:
        if self.state == "methods":
            if len(self.buffer) < 2 or len(self.buffer) < 2 + self.buffer[1]:
                return
            version, count = self.buffer[0], self.buffer[1]
            methods, self.buffer = self.buffer[2:2 + count], self.buffer[2 + count:]
            if version != VERSION:
                self._drop()
                return
            if NO_AUTH not in methods:
                self._fail_method()
                return
            self.transport.write(bytes((VERSION, NO_AUTH)))
            self.state = "request"
        if self.state == "request":
            self._request()

    def _request(self) -> None:
        if len(self.buffer) < 5:
            return
        version, command, _reserved, address_type = self.buffer[:4]
        if version != VERSION:
            self._drop()
            return
        if address_type != DOMAIN:
            self._reply(ADDRESS_TYPE_NOT_SUPPORTED, b"")
            return
        end = 5 + self.buffer[4] + 2
        if len(self.buffer) < end:
            return
        address, rest = self.buffer[5:end - 2], self.buffer[end:]
        self.buffer = b""
        if command != CONNECT:
            self._reply(COMMAND_NOT_SUPPORTED, address)
            return
        if not _HASH.fullmatch(address):
            self._reply(GENERAL_FAILURE, address)
            return
        self.hash = address.decode("ascii")
        if not self.proxy.arrived(self):
            self._reply(NOT_ALLOWED, address)
            return
        self.state = "waiting"
        self._reply(SUCCEEDED, address)
        if rest:
            self.dataReceived(rest)

    def _fail_method(self) -> None:
        self.transport.write(bytes((VERSION, NO_ACCEPTABLE_METHOD)))
        self._drop()

    def _reply(self, code: int, address: bytes) -> None:
        self.transport.write(bytes((VERSION, code, 0, DOMAIN, len(address))) + address + b"\0\0")
        if code != SUCCEEDED:
            self._drop()

    def _drop(self) -> None:
        """Close after what was written; whatever else the client sends is ignored."""
        self.state = "refused"
        self.buffer = b""
        self.transport.loseConnection()
