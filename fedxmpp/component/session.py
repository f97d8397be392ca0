"""An authenticated component: checks the addresses of what it sends, then routes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.config import ComponentConfig
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.router import Router
    from fedxmpp.stream.xmlstream import ServerStream

log = Logger()

STANZAS = frozenset({"message", "presence", "iq"})
IQ_TYPES = frozenset({"get", "set", "result", "error"})


class ComponentSession:
    """The :class:`~fedxmpp.session.Session` of a component that completed its handshake.

    Every stanza must come from the component's domain or an address at it
    (``user@domain``, ``domain/resource``...; subdomains are other components)
    and name a valid 'to'.  Anything else is answered on this stream with a
    stanza error and goes nowhere.  A missing 'from' is taken to be the domain.
    """

    kind = "component"

    def __init__(self, stream: ServerStream, router: Router, config: ComponentConfig) -> None:
        self.stream = stream
        self.router = router
        self.config = config
        self.domain = config.domain
        self.address = JID(None, config.domain)
        # Bound once: the router forgets a route only if it is still this very object.
        self.route = self._deliver
        self.refused = 0

    # -- Session ---------------------------------------------------------------------

    def send(self, stanza: domish.Element) -> None:
        self.stream.send(stanza)

    def close(self, error: StreamError | None = None) -> None:
        if error is not None:
            self.stream.fail(error)
        else:
            self.stream.close()

    def _deliver(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        self.stream.send(stanza)

    # -- from the component ------------------------------------------------------------

    def element_received(self, element: domish.Element) -> None:
        if element.uri not in ns.STANZA_NAMESPACES or element.name not in STANZAS:
            self.stream.fail(StreamError("unsupported-stanza-type", f"<{element.name}/> is not a stanza"))
            return
        frm_attr = element.getAttribute("from")
        if frm_attr is None:
            frm = self.address
        else:
            try:
                frm = JID.parse(frm_attr)
            except InvalidJID:
                self._refuse(element, StanzaError("jid-malformed", "'from' is not a valid address"))
                return
            if frm.host != self.domain:
                self._refuse(element, StanzaError(
                    "forbidden", f"'from' must be {self.domain} or an address at it (XEP-0114); "
                                 "to speak for users of this server, use the XEP-0356 message privilege"))
                return
        element["from"] = frm.full()

        to_attr = element.getAttribute("to")
        if to_attr is None:
            self._refuse(element, StanzaError("bad-request", "A component must address every stanza ('to')"))
            return
        try:
            to = JID.parse(to_attr)
        except InvalidJID:
            self._refuse(element, StanzaError("jid-malformed", "'to' is not a valid address"))
            return
        if element.name == "iq" and not self._valid_iq(element):
            return
        self.router.route(element, frm, to)

    def _valid_iq(self, element: domish.Element) -> bool:
        stype = element.getAttribute("type")
        if stype not in IQ_TYPES or not element.getAttribute("id"):
            self._refuse(element, StanzaError("bad-request", "An iq needs an 'id' and a valid 'type'"))
            return False
        if stype in ("get", "set") and len(list(element.elements())) != 1:
            self._refuse(element, StanzaError("bad-request", "An iq request carries exactly one payload"))
            return False
        return True

    def _refuse(self, element: domish.Element, error: StanzaError) -> None:
        """Answer on this stream only: the stanza is never routed."""
        self.refused += 1
        log.info("Refused {name} from component {domain} (from={frm!r}, to={to!r}): {condition}",
                 name=element.name, domain=self.domain, frm=element.getAttribute("from"),
                 to=element.getAttribute("to"), condition=error.condition)
        if element.getAttribute("type") in ("error", "result"):
            return  # errors are not answered with errors (RFC 6120 §8.3.1), nor results
        self.stream.send(error_reply(element, error))
