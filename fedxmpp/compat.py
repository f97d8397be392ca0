"""The one module that imports wokkel, with the shims it needs on current Twisted.

wokkel 18.0.0 (2018, its last release) still imports names that Twisted has since
removed (ralphm/wokkel#31): ``twisted.python.compat._PY3`` breaks
``wokkel.data_form`` and with it ``wokkel.disco`` and ``wokkel.ping``, and
``twisted.python.constants`` breaks ``wokkel.muc``.  The shim below puts back
what the parts we use need, *before* importing them; nothing else in the project
imports wokkel, and ``tests/unit/test_compat.py`` fails loudly when one of these
parts stops importing or working.

We also avoid ``wokkel.component.Component``: its module installs the global
reactor on import and connects through it.  :class:`ExternalComponent` is the
same small service (XEP-0114 client side, reconnecting, stamping 'from') on
public ``twisted.words`` pieces with the reactor injected.

What this module offers (for gateways such as ``examples/sms_gateway``):
``ExternalComponent``, ``XMPPHandler``, ``DiscoHandler``, ``DiscoIdentity``,
``DiscoFeature``, ``IDisco``, ``PingHandler``, ``StanzaError``, ``toResponse``,
``JID``.
"""

from __future__ import annotations

import warnings
from typing import Any

import twisted.python.compat as _twisted_compat
from twisted.application.service import Service
from twisted.words.protocols.jabber import component as _jabber_component
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish

# -- shims: what wokkel 18.0.0 imports and Twisted no longer has --------------------------

if "_PY3" not in dir(_twisted_compat):
    # Removed from Twisted (22.x); wokkel.data_form only branches on it.
    setattr(_twisted_compat, "_PY3", True)

# -- the wokkel parts we use (only after the shims) ----------------------------------------

with warnings.catch_warnings():
    # wokkel reads twisted.python.compat's deprecated Python 2 aliases (unicode,
    # iteritems...) at import time; they still work, and the noise helps no one.
    warnings.simplefilter("ignore", DeprecationWarning)
    from wokkel.disco import DiscoFeature, DiscoHandler, DiscoIdentity
    from wokkel.iwokkel import IDisco
    from wokkel.ping import PingHandler
    from wokkel.subprotocols import StreamManager, XMPPHandler

__all__ = ["DiscoFeature", "DiscoHandler", "DiscoIdentity", "ExternalComponent", "IDisco", "JID", "PingHandler",
           "StanzaError", "XMPPHandler", "toResponse"]


class ExternalComponent(StreamManager, Service):
    """A XEP-0114 component connection as a Twisted service, with XMPP handlers.

    Connects to *host*:*port*, authenticates as *domain* with *secret*, reconnects
    with backoff (at most *max_delay* seconds apart) when the connection is lost or
    refused, and stamps 'from' with the component's domain on stanzas that have none.
    """

    def __init__(self, reactor: Any, host: str, port: int, domain: str, secret: str, *,
                 max_delay: float = 30.0) -> None:
        factory = _jabber_component.componentFactory(domain, secret)
        factory.clock = reactor  # ReconnectingClientFactory's retry timer
        factory.maxDelay = max_delay
        StreamManager.__init__(self, factory, reactor=reactor)
        self.reactor = reactor
        self.host = host
        self.port = port
        self.domain = domain
        self._connector: Any = None

    def _authd(self, xs: Any) -> None:
        send = xs.send

        def send_from_domain(obj: Any) -> None:
            if isinstance(obj, domish.Element) and not obj.getAttribute("from"):  # IElement's only provider
                obj["from"] = self.domain
            send(obj)

        xs.send = send_from_domain
        StreamManager._authd(self, xs)

    @property
    def connected(self) -> bool:
        """Whether the handshake is done and the stream is up: only then send.

        (StreamManager.send would otherwise queue without bound while disconnected.)
        """
        return bool(self._initialized and self.xmlstream is not None)

    def startService(self) -> None:
        Service.startService(self)
        self.factory.resetDelay()
        self._connector = self.reactor.connectTCP(self.host, self.port, self.factory)

    def stopService(self) -> None:
        Service.stopService(self)
        self.factory.stopTrying()
        if self._connector is not None:
            self._connector.disconnect()
