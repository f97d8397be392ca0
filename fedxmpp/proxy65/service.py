"""The proxy's XMPP side and its table of connections.

Routed like a component (``Router.add_route`` for its domain), it answers
disco#info (identity proxy/bytestreams), an empty disco#items, the streamhost
query (its public host and port) and the activation of a stream.  The SOCKS5
connections of a stream are paired by their DST.ADDR, SHA-1(SID + requester JID +
target JID) (XEP-0065 §5.3.2); the proxy computes that hash from the activation's
'from', so only the requester the two clients named can activate their stream:
anyone else's activation names a stream that does not exist (``<item-not-found/>``).

Only users of the hosted domains may use the proxy (streamhost query and
activation); the target of a stream may be anyone, since it only connects over
SOCKS5.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.config import Proxy65Config
from fedxmpp.proxy65.relay import Relay
from fedxmpp.proxy65.socks5 import Socks5Connection
from fedxmpp.router import Router
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID, InvalidJID

log = Logger()

BYTESTREAMS = "http://jabber.org/protocol/bytestreams"
NAME = "SOCKS5 bytestreams proxy"


def stream_hash(sid: str, requester: JID, target: JID) -> str:
    """DST.ADDR of a stream (XEP-0065 §5.3.2), lower-case hex."""
    return hashlib.sha1((sid + requester.full() + target.full()).encode("utf-8")).hexdigest()


class Proxy65:
    def __init__(self, settings: Proxy65Config, router: Router, clock: IReactorTime) -> None:
        self.settings = settings
        self.router = router
        self.clock = clock
        self.jid = JID.parse(settings.domain)
        self.connections: set[Socks5Connection] = set()
        # Connections by stream hash, at most two each, until their stream ends.
        self.streams: dict[str, list[Socks5Connection]] = {}
        self.relays: set[Relay] = set()
        self._timers: dict[Socks5Connection, Any] = {}
        router.add_route(settings.domain, self.route)

    # -- SOCKS5 side ----------------------------------------------------------------------

    def factory(self) -> Factory:
        return _Socks5Factory(self)

    def opened(self, conn: Socks5Connection) -> bool:
        if len(self.connections) >= self.settings.max_connections:
            log.warn("SOCKS5 proxy full ({n} connections); refusing {peer}", n=len(self.connections),
                     peer=conn.peer)
            return False
        self.connections.add(conn)
        self._timers[conn] = self.clock.callLater(self.settings.pending_timeout, self._pending_expired, conn)
        return True

    def arrived(self, conn: Socks5Connection) -> bool:
        """*conn* asked for its stream; False when that stream has both its ends already."""
        assert conn.hash is not None
        ends = self.streams.setdefault(conn.hash, [])
        if len(ends) >= 2:
            return False
        ends.append(conn)
        return True

    def closed(self, conn: Socks5Connection) -> None:
        self.connections.discard(conn)
        timer = self._timers.pop(conn, None)
        if timer is not None and timer.active():
            timer.cancel()
        if conn.relay is not None:
            conn.relay.closed(conn)
        elif conn.hash is not None:
            ends = self.streams.get(conn.hash, [])
            if conn in ends:
                ends.remove(conn)
            if not ends:
                self.streams.pop(conn.hash, None)

    def _pending_expired(self, conn: Socks5Connection) -> None:
        self._timers.pop(conn, None)
        if conn.relay is None:
            log.info("SOCKS5 connection from {peer} not activated within {seconds}s; closing", peer=conn.peer,
                     seconds=self.settings.pending_timeout)
            conn.transport.loseConnection()

    def _relay_ended(self, relay: Relay) -> None:
        self.relays.discard(relay)
        for conn in relay.directions:
            if conn.hash is not None:
                self.streams.pop(conn.hash, None)
        log.info("SOCKS5 stream of {owner} ended after {bytes} bytes", owner=relay.owner, bytes=relay.carried)

    def shutdown(self) -> None:
        for conn in list(self.connections):
            conn.transport.abortConnection()

    # -- XMPP side ------------------------------------------------------------------------

    def disco_items(self, *_query: Any) -> list[tuple[JID, str]]:
        return [(self.jid, NAME)]

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        kind = stanza.getAttribute("type")
        if stanza.name != "iq" or kind not in ("get", "set"):
            if stanza.name == "message":
                self.router.bounce(stanza, frm, to, StanzaError("service-unavailable"))
            return
        payload = next(stanza.elements(), None)
        if payload is None or to.user is not None or to.resource is not None:
            self._error(stanza, frm, to, "service-unavailable")
            return
        what = (kind, payload.uri, payload.name)
        if what == ("get", ns.DISCO_INFO, "query"):
            self._disco_info(stanza, frm, to, payload)
        elif what == ("get", ns.DISCO_ITEMS, "query"):
            self._reply(stanza, frm, domish.Element((ns.DISCO_ITEMS, "query")))
        elif what == ("get", BYTESTREAMS, "query"):
            if self._may_use(stanza, frm, to):
                self._reply(stanza, frm, self._streamhost())
        elif what == ("set", BYTESTREAMS, "query"):
            if self._may_use(stanza, frm, to):
                self._activate(stanza, frm, to, payload)
        else:
            self._error(stanza, frm, to, "service-unavailable")

    def _disco_info(self, stanza: domish.Element, frm: JID, to: JID, query: domish.Element) -> None:
        if query.getAttribute("node"):
            self._error(stanza, frm, to, "item-not-found")
            return
        answer = domish.Element((ns.DISCO_INFO, "query"))
        identity = answer.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "proxy", "bytestreams", NAME
        for feature in (BYTESTREAMS, ns.DISCO_INFO, ns.DISCO_ITEMS):
            answer.addElement("feature")["var"] = feature
        self._reply(stanza, frm, answer)

    def _streamhost(self) -> domish.Element:
        query = domish.Element((BYTESTREAMS, "query"))
        host = query.addElement("streamhost")
        host["jid"] = self.jid.full()
        host["host"] = self.settings.host
        host["port"] = str(self.settings.port)
        return query

    def _activate(self, stanza: domish.Element, frm: JID, to: JID, query: domish.Element) -> None:
        sid = query.getAttribute("sid") or ""
        activate = next((c for c in query.elements() if c.name == "activate" and c.uri == BYTESTREAMS), None)
        try:
            target = JID.parse(str(activate).strip()) if activate is not None else None
        except InvalidJID:
            target = None
        if not sid or target is None:
            self._error(stanza, frm, to, "bad-request", "an activation needs a sid and the target's JID")
            return
        digest = stream_hash(sid, frm, target)
        ends = self.streams.get(digest, [])
        if len(ends) < 2:
            self._error(stanza, frm, to, "item-not-found", "both parties must connect before activation")
            return
        if any(conn.relay is not None for conn in ends):
            self._error(stanza, frm, to, "not-allowed", "this stream is already active")
            return
        owner = frm.bare.full()
        if sum(1 for relay in self.relays if relay.owner == owner) >= self.settings.max_streams_per_user:
            self._error(stanza, frm, to, "resource-constraint", "too many streams at once")
            return
        for conn in ends:
            timer = self._timers.pop(conn, None)
            if timer is not None and timer.active():
                timer.cancel()
        relay = Relay(ends[0], ends[1], owner=owner, clock=self.clock, rate=self.settings.rate,
                      idle_timeout=self.settings.idle_timeout, ended=self._relay_ended)
        self.relays.add(relay)
        log.info("SOCKS5 stream {sid} activated by {requester} for {target}", sid=sid, requester=frm.full(),
                 target=target.full())
        self._reply(stanza, frm, None)

    def _may_use(self, stanza: domish.Element, frm: JID, to: JID) -> bool:
        if frm.user is not None and frm.host in self.router.hosted:
            return True
        self._error(stanza, frm, to, "forbidden", "this proxy serves the users of its server only")
        return False

    def _reply(self, stanza: domish.Element, frm: JID, payload: domish.Element | None) -> None:
        result = domish.Element((ns.CLIENT, "iq"))
        result["type"] = "result"
        result["id"] = stanza.getAttribute("id", "")
        result["from"] = self.jid.full()
        result["to"] = frm.full()
        if payload is not None:
            result.addChild(payload)
        self.router.route(result, self.jid, frm)

    def _error(self, stanza: domish.Element, frm: JID, to: JID, condition: str, text: str | None = None) -> None:
        self.router.bounce(stanza, frm, to, StanzaError(condition, text))


class _Socks5Factory(Factory):
    def __init__(self, proxy: Proxy65) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Any) -> Protocol:
        return Socks5Connection(self.proxy)
