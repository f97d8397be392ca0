"""Client streams on Twisted's fakes: the server built by ``app.build`` (IM core,
features, stream management, client state indication) on in-memory storage and
a fake clock, and a ServerStream with the c2s handler on a StringTransport per
client.

A :class:`Client` starts authenticated (SASL is tested elsewhere): it opens the
stream after SASL, reads the features, and binds or resumes.  What the server
writes is parsed with the standard library's parser, independently of ours.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from fedxmpp import config
from fedxmpp.c2s.negotiation import ClientStreamHandler, Stage
from fedxmpp.storage import RosterItem
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from fedxmpp.stream.framing import FRAMING_NS
from tests.unit.fakes import MessageLink, build_server
from tests.unit.storage.fakes import MemoryStorage

DOMAIN = "example.test"
SM = "urn:xmpp:sm:3"
CSI = "urn:xmpp:csi:0"
STREAMS = "{http://etherx.jabber.org/streams}"
CLIENT = "{jabber:client}"
HEADER = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{ns.STREAMS}' "
          f"to='{DOMAIN}' version='1.0'>")


def q(name: str, uri: str = ns.CLIENT) -> str:
    return f"{{{uri}}}{name}"


class World:
    """The whole server (``app.build``) on fakes, with federation replaced by a
    recorder (:attr:`remote`) so that tests can see what would leave.

    The message archive archives nothing unless told (*archive* is its
    ``default_prefs``): these tests count the acks of stanzas that offline
    storage or stream management make durable, and an archived message's ack
    would also wait for the archive's group commit (see the features' tests).
    """

    def __init__(self, users: tuple[str, ...] = ("alice", "bob", "carol"), *, offline_quota: int = 1000,
                 archive: str = "never", **c2s: Any) -> None:
        cfg = config.load(None)
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, domains=(DOMAIN,)),
                                  c2s=dataclasses.replace(cfg.c2s, **c2s),
                                  im=dataclasses.replace(cfg.im, offline_quota=offline_quota),
                                  archive=dataclasses.replace(cfg.archive, default_prefs=archive))
        self.config = cfg
        self.storage = MemoryStorage()
        for user in users:
            self.storage.accounts.put(user, DOMAIN, {})
        self.server = build_server(cfg, storage=self.storage)
        self.clock = self.server.reactor
        self.hooks = self.server.hooks
        self.router = self.server.router
        self.sessions = self.server.sessions
        #: What went to the default route (federation): (stanza, from, to).
        self.remote: list[Any] = []
        self.router.set_default(lambda st, frm, to: self.remote.append((st, frm, to)))
        self.features = self.server.features
        self.im = self.server.im
        self.c2s = self.server.c2s
        self.sm = self.c2s.sm

    def connect(self, user: str) -> Client:
        """A client of *user* that has authenticated and opened the stream after
        SASL: the bind-stage features have been read (``client.features``)."""
        handler = ClientStreamHandler(self.c2s)
        handler.stage, handler.user, handler.auth_domain = Stage.BIND, user, DOMAIN
        stream = ServerStream(handler, content_ns=ns.CLIENT, limits=self.config.limits, clock=self.clock,
                              negotiation_timeout=60)
        client = Client(self, stream)
        client.send(HEADER)
        client.features = client.expect(f"{STREAMS}features")
        return client

    def connect_ws(self, user: str) -> WsClient:
        """As :meth:`connect`, over a WebSocket link (RFC 7395 framing) built by
        the same factory as TCP streams."""
        link = MessageLink()
        stream = self.server.c2s_factory.client_stream(link)
        handler = stream.handler
        assert isinstance(handler, ClientStreamHandler)
        handler.stage, handler.user, handler.auth_domain = Stage.BIND, user, DOMAIN
        client = WsClient(self, stream, link)
        client.send(f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0'/>")
        opened = client.take()
        assert [el.tag for el in opened] == [f"{{{FRAMING_NS}}}open", f"{STREAMS}features"], opened
        client.features = opened[1]
        return client

    def online(self, user: str, resource: str, *, sm: bool = True, presence: bool = True,
               **enable: str) -> Client:
        """Connect, bind, enable stream management (resumable unless told
        otherwise) and send initial presence."""
        client = self.connect(user)
        client.bind(resource)
        if sm:
            client.enable(**({"resume": "true"} | enable))
        if presence:
            client.send("<presence/>")
            client.take()
        return client

    def session(self, client: Client) -> Any:
        """The bound session with *client*'s full JID (None if there is none)."""
        assert client.jid is not None
        return self.sessions.get(JID.parse(client.jid))

    def befriend(self, a: str, b: str) -> None:
        """A mutual subscription ('both') between users *a* and *b*."""
        for user, contact in ((a, b), (b, a)):
            self.storage.roster.rosters.setdefault((user, DOMAIN), {})[f"{contact}@{DOMAIN}"] = RosterItem(
                jid=f"{contact}@{DOMAIN}", name=None, subscription="both", ask=False, pending_in=False, groups=())

    def offline_bodies(self, user: str) -> list[str]:
        """The bodies of the messages stored for *user*, oldest first."""
        out = []
        for text in self.storage.offline.messages.get((user, DOMAIN), []):
            el = ET.fromstring(f"<w xmlns='jabber:client'>{text}</w>")[0]
            out.append(el.findtext(q("body")))
        return out


class Client:
    """One client connection; every element the server writes is parsed and kept."""

    def __init__(self, world: World, stream: ServerStream) -> None:
        self.world = world
        self.stream = stream
        self.transport = StringTransport()
        self.features: ET.Element | None = None
        self.jid: str | None = None
        self.sm_id: str | None = None
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._read = 0
        self._pending: list[ET.Element] = []
        #: Stanzas received (message/presence/iq), the client's own h.
        self.handled = 0
        self.closed_tag = False
        self._connect(stream)

    def _connect(self, stream: ServerStream) -> None:
        stream.makeConnection(self.transport)

    # -- writing ---------------------------------------------------------------------------

    def send(self, text: str) -> None:
        self.stream.dataReceived(text.encode())

    # -- reading ----------------------------------------------------------------------------

    def _pump(self) -> None:
        data = self.transport.value()
        new, self._read = data[self._read:], len(data)
        if not new:
            return
        self._parser.feed(new)
        for event, el in self._parser.read_events():
            if event == "start":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._pending.append(el)
                elif self._depth == 0:
                    self.closed_tag = True

    def take(self) -> list[ET.Element]:
        """Every top-level element written since the last take; stanzas count
        towards this client's h, as a stream-managed client would count them."""
        self._pump()
        out, self._pending = self._pending, []
        self.handled += sum(1 for el in out if el.tag in (q("message"), q("presence"), q("iq")))
        return out

    def expect(self, tag: str) -> ET.Element:
        got = self.take()
        assert [el.tag for el in got] == [tag], f"expected one {tag}, got {[to_text(e) for e in got]}"
        return got[0]

    def stanzas(self, name: str | None = None) -> list[ET.Element]:
        """The stanzas written since the last take (nonzas are left out)."""
        return [el for el in self.take() if el.tag.startswith(CLIENT) and (name is None or el.tag == q(name))]

    def bodies(self) -> list[str | None]:
        return [m.findtext(q("body")) for m in self.stanzas("message")]

    # -- negotiation ---------------------------------------------------------------------------

    def bind(self, resource: str) -> str:
        self.send(f"<iq type='set' id='bind'><bind xmlns='{ns.BIND}'><resource>{resource}</resource></bind></iq>")
        reply = self.expect(q("iq"))
        self.handled = 0  # counting starts with <enable/>
        self.jid = reply.findtext(f"{{{ns.BIND}}}bind/{{{ns.BIND}}}jid")
        assert self.jid, to_text(reply)
        return self.jid

    def enable(self, **attrs: str) -> ET.Element:
        text = "".join(f" {k}='{v}'" for k, v in attrs.items())
        self.send(f"<enable xmlns='{SM}'{text}/>")
        enabled = self.expect(q("enabled", SM))
        self.sm_id = enabled.get("id")
        self.handled = 0
        return enabled

    def resume(self, previd: str | None, h: int) -> ET.Element:
        """Send <resume/>; the answer (what follows it stays to be taken)."""
        self.send(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
        self._pump()
        assert self._pending, "no answer to <resume/>"
        return self._pending.pop(0)

    # -- the connection ends ---------------------------------------------------------------------

    def drop(self) -> None:
        """The connection breaks: no closing tag, no close_notify (a dead network)."""
        self.stream.connectionLost(Failure(ConnectionLost("gone")))

    def close(self) -> None:
        """The client closes its stream cleanly and the connection ends."""
        self.send("</stream:stream>")
        self.stream.connectionLost(Failure(ConnectionDone()))


class WsClient(Client):
    """A client over a WebSocket link: each message the server writes is parsed
    as a document of its own (RFC 7395), and the stream ends with <close/>."""

    def __init__(self, world: World, stream: ServerStream, link: MessageLink) -> None:
        self.link = link
        super().__init__(world, stream)

    def _connect(self, stream: ServerStream) -> None:
        self.transport = self.link
        stream.makeConnection(self.link)

    def _pump(self) -> None:
        new, self._read = self.link.messages[self._read:], len(self.link.messages)
        for message in new:
            el = ET.fromstring(message)
            if el.tag == f"{{{FRAMING_NS}}}close":
                self.closed_tag = True
            self._pending.append(el)

    def close(self) -> None:
        self.send(f"<close xmlns='{FRAMING_NS}'/>")
        self.stream.connectionLost(Failure(ConnectionDone()))


def to_text(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")


def condition(el: ET.Element) -> str | None:
    """The stanza error condition of an error stanza or <failed/>."""
    for child in el.iter():
        if child.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def stream_error(el: ET.Element) -> str | None:
    if el.tag != f"{STREAMS}error":
        return None
    for child in el:
        if child.tag.startswith("{urn:ietf:params:xml:ns:xmpp-streams}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return "(none)"
