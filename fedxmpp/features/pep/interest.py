"""Who wants to hear about which nodes: XEP-0115 entity capabilities of the
resources that send presence to a user, and the "+notify" features behind them.

* :class:`Listeners` keeps, per user, the available resources (contacts' and the
  user's own) that sent the user's bare JID presence with a ``<c/>`` element and
  a non-negative priority: their caps and, once known, their features.  An
  unavailable presence, a presence without caps or with a negative priority
  removes a resource.  Bounded: users least recently heard of are forgotten
  first, and a user keeps at most :data:`MAX_PER_OWNER` resources.
* :class:`CapsCache` learns the features behind a caps ``ver`` by asking the
  resource that advertised it (disco#info of ``node#ver``, from the user's bare
  JID), once per ``ver`` at a time, and keeps what it learnt for hashed caps
  whose answer verifies (XEP-0115 §5.4, extended forms included) — a bounded LRU
  of :data:`CACHE_SIZE` entries.  An answer that does not verify serves only the
  resource that gave it; legacy caps (no 'hash') are never shared.  A question
  unanswered after :data:`QUERY_TIMEOUT` seconds is given up, and at most
  :data:`MAX_QUERIES` are in flight.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features.forms import DATA, FormError, parse
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID

log = Logger()

CAPS = "http://jabber.org/protocol/caps"
CACHE_SIZE = 1_000
QUERY_TIMEOUT = 30.0
MAX_QUERIES = 1_000
MAX_WAITERS = 1_000
MAX_OWNERS = 20_000
MAX_PER_OWNER = 2_000
QUERY_PREFIX = "pep-caps-"

HASHES = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}

Features = frozenset[str]


@dataclass(frozen=True)
class Caps:
    node: str
    ver: str
    hash: str | None

    @property
    def key(self) -> tuple[str, str] | None:
        """What the features can be cached under: hashed caps only."""
        return (self.hash, self.ver) if self.hash else None


def parse_caps(presence: domish.Element) -> Caps | None:
    for child in presence.elements():
        if child.uri == CAPS and child.name == "c":
            node, ver = child.getAttribute("node"), child.getAttribute("ver")
            if node and ver:
                return Caps(node, ver, child.getAttribute("hash"))
    return None


def priority_of(presence: domish.Element) -> int:
    for child in presence.elements():
        if child.name == "priority" and child.uri in ns.STANZA_NAMESPACES:
            try:
                return int(str(child).strip())
            except ValueError:
                return 0
    return 0


def verification_string(query: domish.Element) -> str:
    """XEP-0115 §5.4 of a disco#info result: identities, features, then extended
    forms by FORM_TYPE with their fields by var and values sorted."""
    identities, features, extended = [], [], []
    for child in query.elements():
        if child.name == "identity":
            lang = child.getAttribute((ns.XML, "lang")) or ""
            identities.append(f"{child.getAttribute('category') or ''}/{child.getAttribute('type') or ''}/"
                              f"{lang}/{child.getAttribute('name') or ''}")
        elif child.name == "feature":
            features.append(child.getAttribute("var") or "")
        elif child.uri == DATA and child.name == "x":
            try:
                form = parse(child)
            except FormError:
                continue
            form_type = form.form_type
            if form_type is None:
                continue
            text = form_type + "<"
            for var in sorted(v for v in form.fields if v != "FORM_TYPE"):
                text += var + "<" + "".join(v + "<" for v in sorted(form.fields[var].values))
            extended.append((form_type, text))
    s = "".join(i + "<" for i in sorted(identities)) + "".join(f + "<" for f in sorted(features))
    s += "".join(text for _, text in sorted(extended))
    return s


def verifies(caps: Caps, query: domish.Element) -> bool:
    algorithm = HASHES.get((caps.hash or "").lower())
    if algorithm is None:
        return False
    digest = hashlib.new(algorithm, verification_string(query).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii") == caps.ver


@dataclass
class Listener:
    caps: Caps
    priority: int
    features: Features | None = None
    #: A question about these caps is on its way (or was answered).
    asked: bool = False


class Listeners:
    def __init__(self, max_owners: int = MAX_OWNERS, max_per_owner: int = MAX_PER_OWNER) -> None:
        self.max_owners = max_owners
        self.max_per_owner = max_per_owner
        self._by_owner: OrderedDict[JID, OrderedDict[JID, Listener]] = OrderedDict()

    def update(self, owner: JID, full: JID, caps: Caps, priority: int) -> Listener | None:
        """Record *full*'s available presence to *owner*; the listener when its
        features are still to be learnt (new resource, new caps, or never learnt)."""
        table = self._by_owner.get(owner)
        if table is None:
            table = self._by_owner[owner] = OrderedDict()
            while len(self._by_owner) > self.max_owners:
                self._by_owner.popitem(last=False)
        else:
            self._by_owner.move_to_end(owner)
        listener = table.get(full)
        if listener is not None and listener.caps == caps:
            listener.priority = priority
            if listener.asked:
                return None
        else:
            listener = table[full] = Listener(caps, priority)
            while len(table) > self.max_per_owner:
                table.popitem(last=False)
        listener.asked = True
        return listener

    def get(self, owner: JID, full: JID) -> Listener | None:
        table = self._by_owner.get(owner)
        return table.get(full) if table is not None else None

    def remove(self, owner: JID, full: JID) -> None:
        table = self._by_owner.get(owner)
        if table is not None:
            table.pop(full, None)
            if not table:
                del self._by_owner[owner]

    def forget(self, owner: JID) -> None:
        self._by_owner.pop(owner, None)

    def of(self, owner: JID) -> list[tuple[JID, Listener]]:
        table = self._by_owner.get(owner)
        return sorted(table.items(), key=lambda kv: kv[0].full()) if table else []


@dataclass
class _Query:
    entity: JID
    caps: Caps
    timer: Any
    waiters: list[tuple[JID, Callable[[Features], None]]] = field(default_factory=list)


class CapsCache:
    def __init__(self, ctx: ServerContext, size: int = CACHE_SIZE) -> None:
        self.ctx = ctx
        self.size = size
        self._known: OrderedDict[tuple[str, str], Features] = OrderedDict()
        self._queries: dict[str, _Query] = {}
        self._asking: dict[tuple[str, str], _Query] = {}
        # One Caps object per distinct caps, however many resources send it.
        self._interned: OrderedDict[Caps, Caps] = OrderedDict()
        #: Questions sent, for tests and logs.
        self.asked = 0

    def intern(self, caps: Caps) -> Caps:
        known = self._interned.get(caps)
        if known is not None:
            return known
        self._interned[caps] = caps
        while len(self._interned) > self.size:
            self._interned.popitem(last=False)
        return caps

    def features(self, caps: Caps) -> Features | None:
        key = caps.key
        if key is None:
            return None
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        return known

    def learn(self, asker: JID, entity: JID, caps: Caps, then: Callable[[Features], None]) -> None:
        """Call ``then(features)`` with the features behind *entity*'s *caps*: now if
        they are known, else when *entity* (asked from *asker*) has answered."""
        known = self.features(caps)
        if known is not None:
            then(known)
            return
        key = caps.key
        query = self._asking.get(key) if key is not None else None
        if query is not None:
            if len(query.waiters) < MAX_WAITERS:
                query.waiters.append((entity, then))
            return
        if len(self._queries) >= MAX_QUERIES:
            log.warn("Too many caps questions in flight; not asking {entity}", entity=entity.full())
            return
        qid = QUERY_PREFIX + secrets.token_hex(8)
        timer = self.ctx.clock.callLater(QUERY_TIMEOUT, self._give_up, qid)
        query = _Query(entity, caps, timer, [(entity, then)])
        self._queries[qid] = query
        if key is not None:
            self._asking[key] = query
        iq = domish.Element((ns.CLIENT, "iq"))
        iq["type"] = "get"
        iq["id"] = qid
        iq["from"] = asker.full()
        iq["to"] = entity.full()
        iq.addElement((ns.DISCO_INFO, "query"))["node"] = f"{caps.node}#{caps.ver}"
        self.asked += 1
        self.ctx.router.route(iq, asker, entity)

    def _done(self, qid: str) -> _Query | None:
        query = self._queries.pop(qid, None)
        if query is not None:
            key = query.caps.key
            if key is not None and self._asking.get(key) is query:
                del self._asking[key]
        return query

    def _give_up(self, qid: str) -> None:
        query = self._done(qid)
        if query is not None:
            log.debug("No caps answer from {entity}", entity=query.entity.full())

    def result(self, event: StanzaEvent) -> bool:
        """The ``iq-result/bare`` and ``iq-error/bare`` hook: an answer to one of our
        questions is consumed here."""
        qid = event.stanza.getAttribute("id") or ""
        if not qid.startswith(QUERY_PREFIX):
            return False
        query = self._queries.get(qid)
        if query is None or event.frm != query.entity:
            return True  # too late, or not from whom we asked: dropped
        self._done(qid)
        if query.timer.active():
            query.timer.cancel()
        answer = event.payload()
        if event.type != "result" or answer is None or answer.uri != ns.DISCO_INFO:
            return True
        features = frozenset(c.getAttribute("var") or "" for c in answer.elements() if c.name == "feature")
        waiters = query.waiters
        key = query.caps.key
        if key is not None and verifies(query.caps, answer):
            self._known[key] = features
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        else:
            # Unverifiable: good for the resource that said it, nobody else.
            waiters = [(entity, then) for entity, then in waiters if entity == query.entity]
        for _, then in waiters:
            then(features)
        return True
