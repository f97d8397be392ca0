"""The component side of a :class:`ServerStream`: header, handshake, then the session.

XEP-0114 §3: the component opens a stream in ``jabber:component:accept`` whose
'to' names the component's domain; the server answers with its header (a fresh
stream id, no version, no features); the component sends
``<handshake>hex(SHA-1(stream id + secret))</handshake>`` and the server answers
``<handshake/>``, or a ``<not-authorized/>`` stream error and closes.  One attempt
per connection; anything but a handshake before it is ``<not-authorized/>`` too.
"""

from __future__ import annotations

import hashlib
import hmac

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.component.context import Components, peer_host
from fedxmpp.component.session import ComponentSession
from fedxmpp.config import ComponentConfig
from fedxmpp.stream.xmlstream import ServerStream, duration, end_reason
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import InvalidJID, prep_domain

log = Logger()


def handshake_digest(stream_id: str, secret: str) -> str:
    """The XEP-0114 handshake value: lower-case hex SHA-1 of stream id + secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


class ComponentStreamHandler:
    """The component meaning of a :class:`ServerStream`, from header to session."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.config: ComponentConfig | None = None
        self.session: ComponentSession | None = None

    # -- StreamHandler ----------------------------------------------------------------

    def stream_opened(self, stream: ServerStream, root: domish.Element) -> str:
        to = root.getAttribute("to")
        if not to:
            raise StreamError("host-unknown", "The stream header names no component domain ('to')")
        try:
            domain = prep_domain(to)
        except InvalidJID:
            raise StreamError("host-unknown", "Not a domain") from None
        config = self.components.configured(domain)
        if config is None:
            log.info("Component connection for unconfigured domain {domain!r} from {peer}",
                     domain=domain, peer=peer_host(stream))
            raise StreamError("host-unknown", "No component is configured for this domain")
        self.config = config
        return domain

    def features(self, stream: ServerStream) -> domish.Element | None:
        return None

    def element_received(self, stream: ServerStream, element: domish.Element) -> None:
        if self.session is not None:
            self.session.element_received(element)
        elif element.name == "handshake" and element.uri == ns.COMPONENT:
            self._handshake(stream, element)
        else:
            stream.fail(StreamError("not-authorized", "Complete the handshake first (XEP-0114)"))

    def stream_closing(self, stream: ServerStream) -> None:
        pass  # routes go when the connection does (stream_closed)

    def stream_closed(self, stream: ServerStream, reason: Failure) -> None:
        who = (f"component {self.config.domain}" if self.session is not None and self.config is not None
               else "an unauthenticated component")
        peer = stream.transport.getPeer()
        log.info("Connection of {who} from {peer} ended ({why}) after {duration:.1f} s", who=who,
                 peer=getattr(peer, "host", str(peer)), why=end_reason(stream, "the component"),
                 duration=duration(stream))
        if self.session is not None:
            self.components.detach(self.session)
            self.session = None

    # -- handshake ----------------------------------------------------------------------

    def _handshake(self, stream: ServerStream, element: domish.Element) -> None:
        config = self.config
        assert config is not None, "the header was accepted, so the domain is known"
        expected = handshake_digest(stream.stream_id, config.secret).encode("ascii")
        offered = str(element).strip().lower().encode("utf-8")
        if not hmac.compare_digest(expected, offered):
            # One line per failure with the peer's address, for operators and fail2ban.
            log.info("Component authentication failure for {domain} from {peer}", domain=config.domain,
                     peer=peer_host(stream))
            stream.fail(StreamError("not-authorized", "Handshake failed"))
            return
        session = ComponentSession(stream, self.components.router, config)
        if not self.components.attach(session):
            log.info("Refused a second connection for component {domain} from {peer}", domain=config.domain,
                     peer=peer_host(stream))
            stream.fail(StreamError("conflict", "This component is already connected"))
            return
        self.session = session
