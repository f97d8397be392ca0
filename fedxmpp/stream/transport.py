"""What fedxmpp's stream protocols require from the transport under them.

Twisted types ``Protocol.transport`` as ``ITransport | None``, which has neither
flow control nor TLS; our streams run on TCP (possibly under TLS) and use both.
This interface names that contract for the type checker: a protocol declares
``transport: IStreamTransport``. Twisted's TCP and TLS transports provide all of it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    ITLSTransport,
)


class IStreamTransport(ITLSTransport, ITCPTransport, IConsumer, IPushProducer, ISystemHandle):
    """A TCP transport that can start TLS, consumes a producer and can be paused."""

    def getHandle() -> Any:
        """The socket, or once TLS runs, the ``OpenSSL.SSL.Connection`` (whose type
        depends on the state, so callers get ``Any``, not ``object``)."""
