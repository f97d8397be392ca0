"""The components' registry, :class:`Components`: the table of component domains.

Each configured domain always has a route: to its session while the component is
connected, otherwise to :meth:`Components._unavailable`, which answers iq and
message stanzas with ``<service-unavailable/>`` and drops presence with a log line,
so that nothing sent to a gateway that is down disappears silently (and nothing
for a component domain ever leaks to federation).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import interfaces
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.component.privilege import Privileges, advertisement
from fedxmpp.component.session import ComponentSession
from fedxmpp.config import ComponentConfig, Config
from fedxmpp.hooks import Hooks
from fedxmpp.router import Route, Router
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml.errors import StanzaError, StreamError
from fedxmpp.xml.jid import JID

log = Logger()


class Components:
    """Which component domains are configured, which are connected, and their routes."""

    def __init__(self, config: Config, router: Router, hooks: Hooks, clock: interfaces.IReactorTime,
                 roster: Callable[[], Any] = lambda: None, user_route: Route | None = None) -> None:
        self.config = config
        self.router = router
        # How a stanza sent on a user's behalf (XEP-0356) travels: through that user's
        # own outbound path (carbons, archive, blocking) when the app provides one.
        self.user_route: Route = user_route or router.route
        self.hooks = hooks
        self.clock = clock
        self.hosted: tuple[str, ...] = config.server.domains
        self.sessions: dict[str, ComponentSession] = {}
        self._configured = {c.domain: c for c in config.components.component}
        for domain in self._configured:
            router.add_route(domain, self._unavailable)
        self.privileges = Privileges(self.sessions, self.user_route, roster)
        self.privileges.register(hooks)

    def configured(self, domain: str) -> ComponentConfig | None:
        return self._configured.get(domain)

    def reconfigure(self, config: Config) -> None:
        """A reload: new handshakes use the new secrets and settings of the same
        component domains; connected components stay connected."""
        configured = {c.domain: c for c in config.components.component}
        if configured.keys() != self._configured.keys():
            raise ValueError("the set of component domains cannot change without a restart")
        self.config = config
        self._configured = configured

    # -- sessions ------------------------------------------------------------------------

    def attach(self, session: ComponentSession) -> bool:
        """Make *session* the component of its domain, right after its handshake.

        A domain already connected refuses the newcomer (False), unless the
        component is configured with ``replace = true``: then the old session is
        closed with ``<conflict/>``.
        """
        domain = session.domain
        old = self.sessions.get(domain)
        if old is not None and not session.config.replace:
            return False
        session.stream.negotiated()
        session.stream.write("<handshake/>")
        self.sessions[domain] = session
        self.router.remove_route(domain)
        self.router.add_route(domain, session.route)
        if old is not None:
            log.info("Component {domain}: a new connection replaces the old one", domain=domain)
            old.close(StreamError("conflict", "Replaced by a new connection for this component"))
        log.info("Component {domain} connected from {peer}", domain=domain, peer=peer_host(session.stream))
        for message in advertisement(session.config, self.hosted):
            session.send(message)
        return True

    def detach(self, session: ComponentSession) -> None:
        """The stream of *session* is gone: its domain becomes unavailable (unless replaced)."""
        if self.sessions.get(session.domain) is not session:
            return
        del self.sessions[session.domain]
        self.router.remove_route(session.domain, session.route)
        self.router.add_route(session.domain, self._unavailable)
        log.info("Component {domain} disconnected", domain=session.domain)

    # -- what others see -------------------------------------------------------------------

    def disco_items(self, *_query: Any) -> list[tuple[JID, str]]:
        """The server's disco#items entries: every configured component, connected or not
        (a gateway that is down still exists; talking to it gets an error, not silence)."""
        return [(JID(None, c.domain), c.name or c.domain) for c in self._configured.values()]

    def _unavailable(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        if stanza.name == "presence" or stanza.getAttribute("type") in ("error", "result"):
            # RFC 6120 §8.3.1 and RFC 6121 allow dropping these; errors never get errors.
            log.info("Dropped {name} from {frm} to {to}: component {domain} is not connected",
                     name=stanza.name, frm=frm.full(), to=to.full(), domain=to.host)
            return
        log.info("Component {domain} is not connected: {name} from {frm} to {to} gets service-unavailable",
                 domain=to.host, name=stanza.name, frm=frm.full(), to=to.full())
        self.router.bounce(stanza, frm, to, StanzaError("service-unavailable", f"{to.host} is not connected"))


def peer_host(stream: ServerStream) -> str:
    peer = stream.transport.getPeer()
    return getattr(peer, "host", str(peer))
