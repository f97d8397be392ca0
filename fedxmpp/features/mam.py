"""XEP-0313: Message Archive Management (``urn:xmpp:mam:2``) of each user's 1:1 messages.

**What is archived.**  Messages of type 'chat' or 'normal' that a user sends
(``pre-message/*``, see :mod:`fedxmpp.im.outbound`) or is sent (``message/bare``,
``message/full``, after blocking and before offline storage and delivery, so a
message kept offline is archived too): those with a ``<body/>`` or
``<subject/>``, the XEP-0334 ``<store/>`` hint, end-to-end encrypted payloads
(OMEMO, OpenPGP, XEP-0380), receipts, chat markers, retractions, reactions,
Jingle message initiation and invitations — not chat states alone, not errors,
headlines or groupchat, not messages with ``<no-store/>`` or
``<no-permanent-store/>``, and never a carbon or an archive result.  A message a
user sends to their own JID is archived once, as received.  (Where these
handlers run among the others: :mod:`fedxmpp.chains`.)

**Preferences** (``<prefs/>``, XEP-0441, kept by ``storage.archive``): a
default of 'always', 'never' or 'roster' (only correspondents in the user's
roster) and lists of JIDs always or never archived ('never' first; a full JID
before its bare JID).  Users who never set any get
``[archive] default_prefs``.  Preferences are read when a session binds and
kept in a bounded cache; a message for a user whose preferences (or, for
'roster', whose roster) are not in memory waits for them: the handler returns
an awaitable and the user's chain goes on, in order, once they are read.

**Stanza ids** (XEP-0359).  Every ``<stanza-id/>`` claiming to be by the
recipient's bare JID is removed from an incoming message; an archived one gets
``<stanza-id by='user@domain' id='...'/>`` with its unpredictable archive id
before delivery.  An archived outgoing message carries its stanza-id while the
sender-side events run — so the XEP-0280 sent carbon includes it (§3.2) — and
loses it before it is routed; stanza-ids that the client put there by the
user's JID are removed first.

**Writes never hold delivery up, and acknowledgements wait for them.**  Each
archived message is serialised at once (once for both archives when it goes
between two local users) and queued; the queue is written by one
:meth:`Database.run_interaction` per batch — what arrived in the last
:data:`FLUSH_DELAY` seconds or during the previous write, at most :data:`BATCH`
rows (group commit), or as soon as the previous write is done when a client
waits for an acknowledgement (``storage/hurry``).  Delivery never waits for the write, but the message is
*settled* (:mod:`fedxmpp.router`) only once its rows are committed, so the
sender's XEP-0198 ``<a/>`` never covers a row a crash could lose.  No row is
ever dropped: past :data:`MAX_QUEUED` queued rows a warning is logged and the
rows wait like the others; the senders' sessions stop reading while too many of
their stanzas are unsettled (backpressure).  A batch the database refuses is
logged with its size at error level (its messages count as settled: they were
delivered or stored, and a failing disk must not stop acknowledgements for ever).
A query first waits for the queue to reach the database, so a client always
finds what it was just sent; shutdown writes the whole queue before storage
closes.

**Queries** (iq set ``<query/>`` to one's own bare JID; anyone else gets
``<forbidden/>``): XEP-0004 form ``urn:xmpp:mam:2`` (parsed by
:mod:`fedxmpp.features.forms`) with 'with' (a bare JID matches every resource),
'start', 'end', 'after-id', 'before-id' and 'ids' (``urn:xmpp:mam:2#extended``;
an id not in the archive is ``<item-not-found/>``); an unknown field is
``<feature-not-implemented/>``.  XEP-0059 paging: ``<max/>`` (at most
``[archive] max_page``, also the page size when none is asked for),
``<after/>``, ``<before/>`` (empty: the last page), ``<index/>``, and
``<flip-page/>``.  Results are ``<message><result queryid id><forwarded><delay/>
<message/></forwarded></result></message>`` to the asking resource, then the iq
result ``<fin complete='true'?>`` with ``<set>`` first (and its index), last and
count; 'complete' means nothing lies beyond the page in the direction of paging.
A get of ``<query/>`` returns the form's fields, of ``<metadata/>`` the first and
last message.

**Retention.**  Messages older than ``[archive] retention_days`` (0: keep for
ever) are purged every :data:`PURGE_INTERVAL` seconds on the injected clock, in
short transactions of :data:`PURGE_BATCH` rows.
"""

from __future__ import annotations

import calendar
import os
import re
import secrets
import time
import weakref
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features import forms
from fedxmpp.features._shared import in_background
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml.parser import parse_stanza
from fedxmpp.storage import (
    ArchiveEntry,
    ArchivedMessage,
    ArchivePrefs,
    ArchiveQuery,
    UnknownArchiveId,
    make_archive_id,
)
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID
from fedxmpp.xml.serialize import serialize

log = Logger()

MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
SID = "urn:xmpp:sid:0"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
RSM = "http://jabber.org/protocol/rsm"
HINTS = "urn:xmpp:hints"
CARBONS = "urn:xmpp:carbons:2"
MUC_USER = "http://jabber.org/protocol/muc#user"
DEFAULTS = ("always", "never", "roster")

MAX_QUEUED = 100_000
BATCH = 5_000
FLUSH_DELAY = 0.05
PREFS_CACHE = 10_000
PURGE_INTERVAL = 3600.0
PURGE_BATCH = 1_000
PURGE_ROUNDS = 100

# Payload namespaces that make a message worth keeping, besides a body or subject.
ARCHIVED_PAYLOADS = frozenset({
    "urn:xmpp:receipts",                # XEP-0184
    "urn:xmpp:chat-markers:0",          # XEP-0333
    "urn:xmpp:eme:0",                   # XEP-0380
    "eu.siacs.conversations.axolotl",   # OMEMO (legacy)
    "urn:xmpp:omemo:2",                 # OMEMO
    "urn:xmpp:openpgp:0",               # XEP-0373
    "urn:xmpp:message-retract:0",       # XEP-0424
    "urn:xmpp:message-retract:1",
    "urn:xmpp:reactions:0",             # XEP-0444
    "urn:xmpp:jingle-message:0",        # XEP-0353
    "urn:xmpp:jingle-message:1",
    "jabber:x:conference",              # XEP-0249
})

QUERY_FIELDS = ("with", "start", "end", "after-id", "before-id", "ids")


def archivable(stanza: domish.Element) -> bool:
    """Whether *stanza* is a message this server archives (module docstring)."""
    if (stanza.getAttribute("type") or "normal") not in ("normal", "chat"):
        return False
    keep = False
    for child in stanza.elements():
        uri, name = child.uri, child.name
        if uri == HINTS:
            if name in ("no-store", "no-permanent-store"):
                return False
            keep = keep or name == "store"
        elif uri == CARBONS or uri == MAM:
            return False
        elif uri in ns.STANZA_NAMESPACES:
            keep = keep or name in ("body", "subject")
        elif uri in ARCHIVED_PAYLOADS:
            keep = True
        elif uri == MUC_USER:
            keep = keep or any(c.name == "invite" for c in child.elements())
    return keep


def strip_stanza_ids(stanza: domish.Element, by: JID) -> None:
    """Remove every XEP-0359 ``<stanza-id/>`` that claims to be by *by*."""
    children = stanza.children
    for c in children:
        if type(c) is not str and c.uri == SID:
            break
    else:
        return  # the common case, without a list copy or a JID parsed

    def claimed_by(child: object) -> bool:
        if not isinstance(child, domish.Element) or child.uri != SID or child.name != "stanza-id":
            return False
        try:
            return JID.parse(child.getAttribute("by") or "") == by
        except InvalidJID:
            return False

    children[:] = [c for c in children if not claimed_by(c)]


def bare_text(jid: JID) -> str:
    return jid.host if jid.user is None else f"{jid.user}@{jid.host}"


class Nonces:
    """Random bytes for archive ids, read from the OS a few thousand ids at a time
    (one system call per message is measurable on a busy server)."""

    def __init__(self, size: int = 6, count: int = 4096) -> None:
        self.size = size
        self.count = count
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        if self._at + self.size > len(self._pool):
            self._pool, self._at = os.urandom(self.size * self.count), 0
        nonce = self._pool[self._at:self._at + self.size]
        self._at += self.size
        return nonce


def stamp(micros: int) -> str:
    """A XEP-0082 DateTime in UTC, with microseconds when there are any."""
    seconds, us = divmod(micros, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{us:06d}Z" if us else f"{text}Z"


_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")


def parse_datetime(text: str) -> int:
    """Microseconds since the epoch of a XEP-0082 DateTime; ValueError if it is not one."""
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a XEP-0082 DateTime")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "")[:6].ljust(6, "0"))
    zone = m.group(8)
    offset = timedelta(0) if zone == "Z" else (1 if zone[0] == "+" else -1) * timedelta(
        hours=int(zone[1:3]), minutes=int(zone[4:6]))
    when = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    return calendar.timegm(when.utctimetuple()) * 1_000_000 + micro


# -- preferences --------------------------------------------------------------------------------


Prefs = ArchivePrefs


def rule(prefs: Prefs, jid: JID) -> str | None:
    """'always' or 'never' if a list names *jid* (or its bare JID), else None."""
    for candidate in (jid.full(), jid.bare.full()) if jid.resource is not None else (jid.full(),):
        if candidate in prefs.never:
            return "never"
        if candidate in prefs.always:
            return "always"
    return None


def prefs_element(prefs: Prefs) -> domish.Element:
    el = domish.Element((MAM, "prefs"))
    el["default"] = prefs.default
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        lst = el.addElement(name)
        for jid in sorted(jids):
            lst.addElement("jid", content=jid)
    return el


class QueryError(Exception):
    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


def parse_prefs(element: domish.Element) -> Prefs:
    default = element.getAttribute("default")
    if default not in DEFAULTS:
        raise QueryError("bad-request", "'default' must be 'always', 'never' or 'roster'")
    lists: dict[str, set[str]] = {"always": set(), "never": set()}
    for child in element.elements():
        if child.uri != MAM or child.name not in lists:
            continue
        for item in child.elements():
            if item.name != "jid":
                continue
            try:
                lists[child.name].add(JID.parse(str(item).strip()).full())
            except InvalidJID:
                raise QueryError("jid-malformed", f"{str(item)!r} is not a JID") from None
    return Prefs(default, frozenset(lists["always"]), frozenset(lists["never"]))


class PrefsCache:
    """Users' preferences: the archive store behind a bounded LRU cache."""

    def __init__(self, ctx: ServerContext, default: Prefs, size: int = PREFS_CACHE) -> None:
        self.ctx = ctx
        self.default = default
        self.size = size
        self._cache: OrderedDict[JID, Prefs] = OrderedDict()
        self._reading: dict[JID, list[defer.Deferred[Prefs]]] = {}

    def cached(self, user: JID) -> Prefs | None:
        prefs = self._cache.get(user)
        if prefs is not None:
            self._cache.move_to_end(user)
        return prefs

    def remember(self, user: JID, prefs: Prefs) -> None:
        self._cache[user] = prefs
        self._cache.move_to_end(user)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    def forget(self, user: JID) -> None:
        self._cache.pop(user, None)

    def load(self, user: JID) -> defer.Deferred[Prefs]:
        """The user's preferences; one read of the store however many ask at once."""
        prefs = self.cached(user)
        if prefs is not None:
            return defer.succeed(prefs)
        d: defer.Deferred[Prefs] = defer.Deferred()
        waiting = self._reading.get(user)
        if waiting is not None:
            waiting.append(d)
        else:
            self._reading[user] = [d]
            defer.Deferred.fromCoroutine(self._read(user))
        return d

    async def _read(self, user: JID) -> None:
        try:
            prefs = await self.ctx.storage.archive.get_prefs(user.user, user.host) or self.default
        except Exception as e:
            for d in self._reading.pop(user, []):
                d.errback(e)
            return
        if user not in self._cache:  # a write may have come first
            self.remember(user, prefs)
        prefs = self._cache[user]
        for d in self._reading.pop(user, []):
            d.callback(prefs)

    async def store(self, user: JID, prefs: Prefs) -> None:
        await self.ctx.storage.archive.set_prefs(user.user, user.host, prefs)
        self.remember(user, prefs)


# -- the write queue ------------------------------------------------------------------------------


class ArchiveQueue:
    """Archive rows on their way to the database, written in batches.

    :meth:`add` never waits and never refuses: it returns a Deferred that fires
    (with None, never a failure) once the row is committed.  What is added is
    written by one transaction :data:`FLUSH_DELAY` seconds later (at once when
    :data:`BATCH` rows wait, or someone waits in :meth:`flushed`), one batch at
    a time.  The rows added between two writes share one Deferred.
    """

    def __init__(self, ctx: ServerContext, limit: int = MAX_QUEUED, delay: float = FLUSH_DELAY) -> None:
        self.ctx = ctx
        self.limit = limit
        self.delay = delay
        self.written = 0
        #: Rows the database refused (logged).
        self.failed = 0
        self.batches = 0
        self._pending: deque[ArchiveEntry] = deque()
        self._writing = False
        self._call: Any = None
        self._added = 0
        self._done = 0
        #: [rows added when the group closed, its Deferred], oldest first; the last
        #: one is open (rows are still joining it) until a write takes its rows.
        self._groups: deque[list[Any]] = deque()
        self._open: list[Any] | None = None
        self._over_limit = False

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, entry: ArchiveEntry) -> defer.Deferred[None]:
        self._pending.append(entry)
        self._added += 1
        if len(self._pending) > self.limit and not self._over_limit:
            self._over_limit = True
            log.warn("Archive write queue over {limit} rows: senders are slowed until it is written",
                     limit=self.limit)
        group = self._open
        if group is None:
            group = self._open = [self._added, defer.Deferred()]
            self._groups.append(group)
        else:
            group[0] = self._added
        self._schedule()
        return group[1]

    def hurry(self) -> None:
        """Someone waits for the rows queued so far (an ack): write them as soon as
        the write under way, if any, is done, without the batching delay."""
        self._schedule(soon=True)

    def flushed(self) -> defer.Deferred[None]:
        """Fires once everything added so far has been written (or given up on)."""
        if self._done >= self._added:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._groups.append([self._added, d])
        self._open = None
        self._schedule(soon=True)
        return d

    def _schedule(self, soon: bool = False) -> None:
        if self._writing or not self._pending:
            return
        soon = soon or len(self._pending) >= BATCH
        if self._call is None:
            self._call = self.ctx.clock.callLater(0 if soon else self.delay, self._flush)
        elif soon and self._call.getTime() > self.ctx.clock.seconds():
            self._call.reset(0)

    def _flush(self) -> None:
        self._call = None
        self._open = None  # rows added from now on wait for a later write
        batch = [self._pending.popleft() for _ in range(min(len(self._pending), BATCH))]
        if batch:
            self._writing = True
            defer.Deferred.fromCoroutine(self._write(batch))

    async def _write(self, batch: list[ArchiveEntry]) -> None:
        try:
            self.written += await self.ctx.storage.archive.add(batch)
            self.batches += 1
        except Exception:
            self.failed += len(batch)
            log.failure("Writing {n} archived messages failed; they are not in the archive", n=len(batch))
        finally:
            self._writing = False
            self._done += len(batch)
            if len(self._pending) <= self.limit:
                self._over_limit = False
            ready = []
            while self._groups and self._groups[0][0] <= self._done and self._groups[0] is not self._open:
                ready.append(self._groups.popleft()[1])
            # Rows already promised to a write that took only part of them go next.
            self._schedule(soon=bool(self._groups) and self._groups[0] is not self._open)
            for d in ready:
                d.callback(None)


# -- the feature ----------------------------------------------------------------------------------


class Archive:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        cfg = ctx.config.archive
        self.max_page = cfg.max_page
        self.retention_days = cfg.retention_days
        self.prefs = PrefsCache(ctx, Prefs(cfg.default_prefs))
        self.queue = ArchiveQueue(ctx)
        # Incoming messages already seen here (a message to an unknown resource
        # goes on as message/bare in the same chain).
        self._seen: weakref.WeakSet[domish.Element] = weakref.WeakSet()
        # The serialised text of messages archived on their way out, with the
        # children and attributes it was made from: a message between two local
        # users is archived twice, and is serialised once unless it changed.
        self._texts: weakref.WeakKeyDictionary[domish.Element, tuple[tuple[Any, ...], str]] = \
            weakref.WeakKeyDictionary()
        self._nonces = Nonces()
        # Outgoing messages carrying the stanza-id added here, until they are routed.
        self._stamped: weakref.WeakKeyDictionary[domish.Element, domish.Element] = weakref.WeakKeyDictionary()
        self.purger: task.LoopingCall | None = None

    def _backlog(self, backlog: dict[str, int]) -> bool:
        backlog["archive"] = len(self.queue)
        return False

    def register(self, hooks: Hooks) -> None:
        self.ctx.disco.account_features.update((MAM, MAM_EXTENDED, SID))
        hooks.add("message/bare", self._incoming, step="archive")
        hooks.add("message/full", self._incoming, step="archive")
        for kind in ("host", "bare", "full"):
            hooks.add(f"pre-message/{kind}", self._outgoing, step="archive-stamp")
            hooks.add(f"pre-message/{kind}", self._unstamp, step="archive-unstamp")
        hooks.add(f"iq-set/bare/{MAM}", in_background(self._iq_set, "archive request"))
        hooks.add(f"iq-get/bare/{MAM}", in_background(self._iq_get, "archive request"))
        hooks.add("c2s/session-bound", self._session_bound)
        hooks.add("account/removed", self.prefs.forget)
        hooks.add("storage/flush", lambda _: self.queue.flushed())
        hooks.add("storage/hurry", lambda _: self.queue.hurry())
        hooks.add("metrics/backlog", self._backlog)
        if self.retention_days > 0:
            self.purger = task.LoopingCall(lambda: defer.Deferred.fromCoroutine(self.purge()).addErrback(
                lambda f: log.failure("Purging the archive failed", f)))
            self.purger.clock = self.ctx.clock
            self.purger.start(PURGE_INTERVAL, now=False)

    # -- deciding -------------------------------------------------------------------------------

    def _decide(self, owner: JID, other: JID) -> bool | None:
        """Whether a message between *owner* and *other* is archived; None when that
        needs what is not in memory."""
        prefs = self.prefs.cached(owner)
        if prefs is None:
            return None
        verdict = self._by_prefs(prefs, owner, other)
        if verdict is not None:
            return verdict
        cached = self.ctx.roster.cached(owner) if self.ctx.roster is not None else None
        if cached is None:
            return None
        item = cached.items.get(other.bare.full())
        return item is not None and not item.hidden

    async def _decide_later(self, owner: JID, other: JID) -> bool:
        prefs = await self.prefs.load(owner)
        verdict = self._by_prefs(prefs, owner, other)
        if verdict is not None:
            return verdict
        item = await self.ctx.roster.item(owner, other.bare)
        return item is not None and not item.hidden

    @staticmethod
    def _by_prefs(prefs: Prefs, owner: JID, other: JID) -> bool | None:
        if prefs.always or prefs.never:
            verdict = rule(prefs, other)
            if verdict is not None:
                return verdict == "always"
        if prefs.default != "roster":
            return prefs.default == "always"
        if other.bare == owner:
            return True
        return None

    def _session_bound(self, session: Any) -> None:
        if self.ctx.storage is not None and self.prefs.cached(session.bare) is None:
            self.prefs.load(session.bare).addErrback(
                lambda f: log.failure("Reading the archive preferences of {user} failed", f,
                                      user=session.bare.full()))

    # -- incoming ----------------------------------------------------------------------------------

    def _incoming(self, event: StanzaEvent) -> bool | defer.Deferred[bool]:
        stanza = event.stanza
        if stanza in self._seen:
            return False
        self._seen.add(stanza)
        owner = event.to.bare
        strip_stanza_ids(stanza, owner)
        if not archivable(stanza):
            return False
        decision = self._decide(owner, event.frm)
        if decision is None:  # the chain waits for the preferences (or roster)
            return defer.Deferred.fromCoroutine(self._decide_then_archive(owner, event))
        if decision:
            self._archive(owner, event.frm, event, outgoing=False)
        return False

    async def _decide_then_archive(self, owner: JID, event: StanzaEvent) -> bool:
        try:
            decision = await self._decide_later(owner, event.frm)
        except Exception:
            log.failure("No archive decision for a message to {owner}: not archived", owner=owner.full())
            return False
        if decision:
            self._archive(owner, event.frm, event, outgoing=False)
        return False

    # -- outgoing ----------------------------------------------------------------------------------

    def _outgoing(self, event: StanzaEvent) -> bool:
        frm, other = event.frm, event.to
        if frm.user is None or (other.user == frm.user and other.host == frm.host):
            return False  # to oneself: archived once, on the way in
        stanza = event.stanza
        if not archivable(stanza):
            return False
        owner = frm.bare
        strip_stanza_ids(stanza, owner)
        decision = self._decide(owner, other)
        if decision is None:
            entry = self._entry(owner, other, stanza, outgoing=True)
            event.settles_when(defer.Deferred.fromCoroutine(self._archive_later(owner, other, entry)))
        elif decision:
            self._archive(owner, other, event, outgoing=True)
        return False

    async def _archive_later(self, owner: JID, other: JID, entry: ArchiveEntry) -> None:
        try:
            if await self._decide_later(owner, other):
                await self.queue.add(entry)
        except Exception:
            log.failure("No archive decision for a message from {owner}: not archived", owner=owner.full())

    def _unstamp(self, event: StanzaEvent) -> bool:
        sid = self._stamped.pop(event.stanza, None)
        if sid is not None:
            children = event.stanza.children
            if sid in children:
                children.remove(sid)
        return False

    # -- archiving ---------------------------------------------------------------------------------

    def _entry(self, owner: JID, other: JID, stanza: domish.Element, outgoing: bool) -> ArchiveEntry:
        now = int(self.ctx.clock.seconds() * 1_000_000)
        return ArchiveEntry(owner.user or "", owner.host, make_archive_id(now, self._nonces.take()), now,
                            bare_text(other), other.resource or "", outgoing, self._text(stanza, outgoing))

    def _text(self, stanza: domish.Element, outgoing: bool) -> str:
        made_of = (tuple(stanza.children), tuple(stanza.attributes.items()))
        if not outgoing:
            known = self._texts.pop(stanza, None)
            if known is not None and known[0] == made_of:
                return known[1]
            return serialize(stanza, ns.CLIENT)
        text = serialize(stanza, ns.CLIENT)
        if stanza.getAttribute("to") is not None:
            self._texts[stanza] = (made_of, text)
        return text

    def _archive(self, owner: JID, other: JID, event: StanzaEvent, outgoing: bool) -> None:
        stanza = event.stanza
        entry = self._entry(owner, other, stanza, outgoing)
        event.settles_when(self.queue.add(entry))
        sid = stanza.addElement((SID, "stanza-id"))
        sid["by"] = owner.full()
        sid["id"] = entry.archive_id
        if outgoing:
            self._stamped[stanza] = sid

    async def purge(self) -> int:
        """Delete what is older than the retention period; how many messages."""
        storage = self.ctx.storage
        if storage is None or self.retention_days <= 0:
            return 0
        cutoff = int((self.ctx.clock.seconds() - self.retention_days * 86400) * 1_000_000)
        total = 0
        for _ in range(PURGE_ROUNDS):
            deleted = await storage.archive.purge(cutoff, PURGE_BATCH)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total:
            log.info("Purged {n} archived messages older than {days} days", n=total, days=self.retention_days)
        return total

    # -- requests ----------------------------------------------------------------------------------

    def _own(self, event: StanzaEvent) -> bool:
        if event.frm.bare == event.to and event.frm.resource is not None:
            return True
        event.error("forbidden", "An archive is its owner's only")
        return False

    async def _iq_get(self, event: StanzaEvent) -> None:
        if not self._own(event):
            return
        child = event.payload()
        name = child.name if child is not None else ""
        if name == "query":
            event.reply(query_form())
        elif name == "prefs":
            event.reply(prefs_element(await self.prefs.load(event.to)))
        elif name == "metadata":
            await self.queue.flushed()
            user = event.to
            bounds = await self.ctx.storage.archive.bounds(user.user, user.host)
            metadata = domish.Element((MAM, "metadata"))
            if bounds is not None:
                for end, message in zip(("start", "end"), bounds):
                    el = metadata.addElement(end)
                    el["id"] = message.archive_id
                    el["timestamp"] = stamp(message.timestamp)
            event.reply(metadata)
        else:
            event.error("feature-not-implemented")

    async def _iq_set(self, event: StanzaEvent) -> None:
        if not self._own(event):
            return
        child = event.payload()
        name = child.name if child is not None else ""
        try:
            if name == "prefs":
                assert child is not None
                prefs = parse_prefs(child)
                await self.prefs.store(event.to, prefs)
                event.reply(prefs_element(prefs))
            elif name == "query":
                assert child is not None
                await self._query(event, child)
            else:
                event.error("feature-not-implemented")
        except QueryError as e:
            event.error(e.condition, e.text)

    async def _query(self, event: StanzaEvent, query: domish.Element) -> None:
        q, flip = parse_query(query, self.max_page)
        await self.queue.flushed()
        user = event.to
        try:
            page = await self.ctx.storage.archive.query(user.user, user.host, q)
        except UnknownArchiveId as e:
            event.error("item-not-found", f"No message {e.archive_id!r} in the archive")
            return
        queryid = query.getAttribute("queryid")
        limits = self.ctx.config.limits
        session = self.ctx.sessions.get(event.frm)
        for message in reversed(page.messages) if flip else page.messages:
            result = result_message(user, event.frm, queryid, message, limits.max_stanza_size * 2,
                                    limits.max_depth + 4)
            if result is None:
                log.error("An archived message of {user} is unreadable: {id}", user=user.full(),
                          id=message.archive_id)
            elif session is not None:
                session.send(result)
            else:
                self.ctx.router.route(result, user, event.frm)
        fin = domish.Element((MAM, "fin"))
        if page.complete:
            fin["complete"] = "true"
        rsm = fin.addElement((RSM, "set"))
        if page.messages:
            first = rsm.addElement("first", content=page.messages[0].archive_id)
            first["index"] = str(page.first_index or 0)
            rsm.addElement("last", content=page.messages[-1].archive_id)
        rsm.addElement("count", content=str(page.count))
        event.reply(fin)


def parse_query(query: domish.Element, max_page: int) -> tuple[ArchiveQuery, bool]:
    """The :class:`ArchiveQuery` of a ``<query/>``, and whether the page is flipped;
    :class:`QueryError` for a request this server cannot answer."""
    values: dict[str, list[str]] = {}
    form_el = forms.find(query)
    if form_el is not None:
        try:
            form = forms.parse(form_el)
        except forms.FormError as e:
            raise QueryError("bad-request", str(e)) from None
        if form.type != "submit" or form.form_type not in (None, MAM):
            raise QueryError("bad-request", f"Expected a submitted {MAM} form")
        values = form.submitted()
        for var in values:
            if var not in QUERY_FIELDS:
                raise QueryError("feature-not-implemented", f"Unknown field {var!r}")
    kw: dict[str, Any] = {}

    def one(var: str) -> str | None:
        got = values.get(var)
        return got[0].strip() if got else None

    with_text = one("with")
    if with_text:
        try:
            jid = JID.parse(with_text)
        except InvalidJID:
            raise QueryError("bad-request", "'with' is not a JID") from None
        kw["with_jid"] = jid.bare.full()
        kw["with_resource"] = jid.resource
    for var in ("start", "end"):
        text = one(var)
        if text:
            try:
                kw[var] = parse_datetime(text)
            except ValueError as e:
                raise QueryError("bad-request", str(e)) from None
    kw["after_id"] = one("after-id") or None
    kw["before_id"] = one("before-id") or None
    if "ids" in values:
        ids = tuple(v.strip() for v in values["ids"] if v.strip())
        if len(ids) > max_page:
            raise QueryError("policy-violation", f"At most {max_page} ids per query")
        kw["ids"] = ids
    limit = max_page
    rsm = next((c for c in query.elements() if c.uri == RSM and c.name == "set"), None)
    if rsm is not None:
        for child in rsm.elements():
            text = str(child).strip()
            if child.name in ("max", "index"):
                if not text.isdigit():
                    raise QueryError("bad-request", f"<{child.name}/> must be a number")
                if child.name == "max":
                    limit = min(int(text), max_page)
                else:
                    kw["index"] = int(text)
            elif child.name == "after":
                if not text:
                    raise QueryError("bad-request", "<after/> needs an id")
                kw["after"] = text
            elif child.name == "before":
                kw["before"] = text
        if "after" in kw and "before" in kw:
            raise QueryError("bad-request", "Use after-id and before-id for a range, not <after/> with <before/>")
    kw["max"] = limit
    flip = any(c.uri == MAM and c.name == "flip-page" for c in query.elements())
    return ArchiveQuery(**kw), flip


def query_form() -> domish.Element:
    query = domish.Element((MAM, "query"))
    query.addChild(forms.build("form", MAM, [
        forms.Field("with", "jid-single"), forms.Field("start", "text-single"),
        forms.Field("end", "text-single"), forms.Field("before-id", "text-single"),
        forms.Field("after-id", "text-single"), forms.Field("ids", "list-multi")]))
    # XEP-0313 §4.1.5: 'ids' is open to any value (XEP-0122).
    for f in query.elements():
        for fld in f.elements():
            if fld.getAttribute("var") == "ids":
                validate = fld.addElement(("http://jabber.org/protocol/xdata-validate", "validate"))
                validate["datatype"] = "xs:string"
                validate.addElement("open")
    return query


def result_message(user: JID, to: JID, queryid: str | None, message: ArchivedMessage, max_size: int,
                   max_depth: int) -> domish.Element | None:
    inner = parse_stanza(message.stanza, max_size, max_depth)
    if inner is None:
        return None
    msg = domish.Element((ns.CLIENT, "message"))
    msg["from"] = user.full()
    msg["to"] = to.full()
    msg["id"] = secrets.token_hex(6)
    result = msg.addElement((MAM, "result"))
    if queryid is not None:
        result["queryid"] = queryid
    result["id"] = message.archive_id
    forwarded = result.addElement((FORWARD, "forwarded"))
    forwarded.addElement((DELAY, "delay"))["stamp"] = stamp(message.timestamp)
    forwarded.addChild(inner)
    return msg


def register(hooks: Hooks, ctx: ServerContext) -> None:
    Archive(ctx).register(hooks)
