"""The HTTP listener: one :class:`twisted.web.server.Site` over a resource tree,
served on ``[http] listen`` (plain) and ``tls_listen`` (TLS with the hosted
domains' certificates, chosen by SNI).

Services add a child resource under the root (:meth:`HttpService.add`).  A service
that receives large bodies registers a *body handler*: it is asked, once a
request's headers are in and before its body is read, where that body goes (an
open file of its own), so that nothing large is held in memory or written to a
temporary file it did not choose.  Refusing a body early is the handler's job too
(it returns a sink that keeps nothing).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol as TypingProtocol

from twisted.web.http import Request as HttpRequestBase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from fedxmpp.config import HttpConfig


class BodyHandler(TypingProtocol):
    def __call__(self, request: Request, method: bytes, path: bytes, length: int | None) -> Any: ...


class HttpRequest(Request):
    """A twisted.web request whose body may go to a file a body handler chose."""

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        method = getattr(channel, "_command", b"")
        path = getattr(channel, "_path", b"")
        for handler in getattr(getattr(channel, "site", None), "body_handlers", ()):
            content = handler(self, method, path, length)
            if content is not None:
                self.content = content
                return
        HttpRequestBase.gotLength(self, length)


class HttpService:
    """The resource tree and the settings every HTTP service needs."""

    def __init__(self, settings: HttpConfig) -> None:
        self.settings = settings
        self.root = Resource()
        self.body_handlers: list[BodyHandler] = []
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    @property
    def enabled(self) -> bool:
        return bool(self.settings.listen or self.settings.tls_listen)

    def add(self, segment: bytes, resource: Resource) -> None:
        """Serve *resource* at ``/<segment>/``."""
        self.root.putChild(segment, resource)

    def url(self, *path: str) -> str:
        """An absolute URL under ``public_url`` (segments already quoted)."""
        return "/".join([self.settings.public_url.rstrip("/"), *path])

    def site(self) -> Site:
        site = Site(self.root)
        site.requestFactory = HttpRequest
        setattr(site, "body_handlers", self.body_handlers)  # read back in HttpRequest.gotLength
        site.displayTracebacks = False
        return site

    def client_address(self, request: Request) -> str:
        """The client's IP address: the peer's, or, when the peer is a trusted proxy,
        the last address in X-Forwarded-For that is not itself a trusted proxy."""
        peer = getattr(request.getClientAddress(), "host", "")
        if not self._is_trusted(peer):
            return peer
        forwarded = ",".join(h.decode("latin-1") for h in request.requestHeaders.getRawHeaders(b"x-forwarded-for", []))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def tls_factory(site: Site, certificates: Any) -> Any:
    """*site* behind TLS with the hosted domains' certificates (SNI), ALPN http/1.1."""
    from twisted.protocols.tls import TLSMemoryBIOFactory
    return TLSMemoryBIOFactory(certificates.server_creator(alpn=[b"http/1.1"]), False, site)


