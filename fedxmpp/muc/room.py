"""One room's state machine (XEP-0045): occupants, presence, messages, subject,
history, and the admin (§8-9) and owner (§10) protocols.

A room only sends: every stanza it emits goes through ``send(stanza, frm, to)``
(the router).  What must survive a restart is handed to ``persist(room)``
and awaited before the request that changed it is answered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.config import MucConfig
from fedxmpp.features import forms
from fedxmpp.features._shared import background
from fedxmpp.features.forms import FormError
from fedxmpp.muc import avatar
from fedxmpp.muc import stanzas as s
from fedxmpp.muc.affiliations import (
    AFFILIATIONS,
    ROLES,
    affiliation_rank,
    default_role,
    may_set_affiliation,
    may_set_role,
)
from fedxmpp.muc.history import History, Request, format_stamp
from fedxmpp.muc.roomconfig import RoomConfig, apply_form, config_form, info_form
from fedxmpp.router import Settled
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID, InvalidJID, prep_resource

log = Logger()

Send = Callable[[domish.Element, JID, JID], Any]

# How long an iq passed on to an occupant waits for its answer, and how many may wait in a room.
IQ_TIMEOUT = 60.0
MAX_PENDING_IQS = 1000


@dataclass
class Bucket:
    """A token bucket: *rate* stanzas a second, bursts of *burst*."""
    tokens: float
    refilled: float

    def take(self, now: float, rate: float, burst: int) -> bool:
        self.tokens = min(float(burst), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self, rate: float) -> float:
        """Seconds until the next token, as of the last take."""
        return max(0.0, (1.0 - self.tokens) / rate)


@dataclass
class Occupant:
    nick: str
    real: JID
    role: str
    occupant_id: str
    # The client's own presence payload (show, status, caps...), re-sent to newcomers.
    payload: list[domish.Element] = field(default_factory=list)
    unavailable: bool = False
    # The occupant's rates of messages (and iqs) and of presence updates.
    messages: Bucket = field(default_factory=lambda: Bucket(0.0, 0.0))
    presences: Bucket = field(default_factory=lambda: Bucket(0.0, 0.0))
    # A presence update held back by the rate, sent when it allows.
    held_presence: Any = None


@dataclass
class PendingIq:
    """An iq passed on to an occupant (§17.3): where its answer goes back."""
    asker: JID
    asker_nick: str
    asker_id: str | None
    answerer: JID
    answerer_nick: str
    timeout: Any


@dataclass
class Subject:
    text: str = ""
    by: str = ""


class Room:
    def __init__(self, jid: JID, config: RoomConfig, limits: MucConfig, clock: Any, send: Send,
                 persist: Callable[[Room], Coroutine[Any, Any, None]], *, affiliations: dict[str, str] | None = None,
                 subject: Subject | None = None, salt: str | None = None, locked: bool = False,
                 nicks: dict[str, str] | None = None, vcard: str | None = None) -> None:
        self.jid = jid
        self.config = config
        self.limits = limits
        self.clock = clock
        self._send = send
        self._persist = persist
        self.affiliations: dict[str, str] = dict(affiliations or {})
        # Reserved nicknames (§7.10), by bare JID.
        self.nicks: dict[str, str] = dict(nicks or {})
        self.subject = subject or Subject()
        self.salt = salt or os.urandom(16).hex()
        # A new room stays locked until its owner configures it or accepts the defaults (§10.1).
        self.locked = locked
        self.occupants: dict[str, Occupant] = {}
        self.by_real: dict[JID, str] = {}
        self.history = History(limits.history_length)
        self.destroyed = False
        # The room's vCard (XEP-0054), as stored, and the hash of its photo ("" for none).
        self.vcard: str | None = vcard
        self.avatar_hash = avatar.photo_hash(avatar.load(vcard)) if vcard else ""
        # iqs passed on to occupants, by the id the room gave them.
        self.pending_iqs: dict[str, PendingIq] = {}
        # Called when the room has no occupant and need not be kept.
        self.on_empty: Callable[[Room], None] = lambda room: None
        # Stamps a reflected message with its archive id and returns what to archive
        # (None when rooms are not archived); record() then stores it.
        self.archive: Any = None

    # -- facts ---------------------------------------------------------------------------

    def affiliation(self, real: JID) -> str:
        bare = real.bare.full()
        if bare in self.limits.admins:
            return "owner"
        return self.affiliations.get(bare, "none")

    def occupant_of(self, real: JID) -> Occupant | None:
        nick = self.by_real.get(real)
        return None if nick is None else self.occupants[nick]

    @property
    def archived(self) -> bool:
        """Whether groupchat messages go to the room's archive."""
        return self.archive is not None and self.config.archiving

    def owners(self) -> list[str]:
        return sorted(j for j, a in self.affiliations.items() if a == "owner")

    def _occupant_id(self, real: JID) -> str:
        digest = hmac.new(self.salt.encode(), real.bare.full().encode(), hashlib.sha256).digest()
        return digest[:18].hex()

    def _reserved_by_other(self, nick: str, real: JID) -> bool:
        bare = real.bare.full()
        return any(n == nick and j != bare for j, n in self.nicks.items())

    def _nick_jid(self, nick: str) -> JID:
        return JID(self.jid.user, self.jid.host, nick)

    def _sees_jids(self, viewer: Occupant) -> bool:
        return self.config.non_anonymous or viewer.role == "moderator"

    # -- presence ------------------------------------------------------------------------

    def presence(self, stanza: domish.Element, frm: JID, nick: str) -> None:
        ptype = stanza.getAttribute("type")
        occupant = self.occupant_of(frm)
        if ptype == "unavailable":
            if occupant is not None:
                self._leave(occupant, [], stanza_payload=_payload(stanza))
            return
        if ptype == "error":
            if occupant is not None:
                self._leave(occupant, [s.TECHNICAL])
            return
        if ptype is not None:
            return  # subscriptions and probes mean nothing to a room
        if occupant is None:
            self.enter(stanza, frm, nick)
        elif occupant.nick != nick:
            self._change_nick(stanza, occupant, nick)
        else:
            occupant.payload = _payload(stanza)
            x = s.child(stanza, s.MUC, "x")
            if x is None:
                self._presence_update(occupant, stanza.getAttribute("id"))
                return
            # A join from an occupant (a client that lost track, e.g. after a reconnect):
            # it is sent the room again as on entering; the others see a presence update.
            for other in list(self.occupants.values()):
                if other is not occupant:
                    self._send_presence(other, occupant)
                    self._send_presence(occupant, other)
            self._welcome(occupant, stanza, x, created=False)

    def _refuse(self, stanza: domish.Element, frm: JID, nick: str, condition: str, text: str | None = None) -> None:
        self._send(s.error_from(stanza, self._nick_jid(nick), frm, StanzaError(condition, text)),
                   self._nick_jid(nick), frm)

    def enter(self, stanza: domish.Element, frm: JID, nick: str, created: bool = False) -> None:
        affiliation = self.affiliation(frm)
        x = s.child(stanza, s.MUC, "x")
        if self.destroyed:
            return self._refuse(stanza, frm, nick, "item-not-found", "This room has been destroyed")
        if self.locked and affiliation != "owner":
            return self._refuse(stanza, frm, nick, "item-not-found", "This room is locked until its owner configures it")
        if affiliation == "outcast":
            return self._refuse(stanza, frm, nick, "forbidden", "You are banned from this room")
        if nick in self.occupants or self._reserved_by_other(nick, frm):
            return self._refuse(stanza, frm, nick, "conflict", "That nickname is in use")
        if self.config.members_only and affiliation_rank(affiliation) < affiliation_rank("member"):
            return self._refuse(stanza, frm, nick, "registration-required", "This room is for members only")
        if self.config.password and affiliation != "owner":
            given = s.text(s.child(x, s.MUC, "password")) if x is not None else ""
            if given != self.config.password:
                return self._refuse(stanza, frm, nick, "not-authorized", "A password is required to enter")
        if len(self.occupants) >= self.config.max_occupants and affiliation_rank(affiliation) < affiliation_rank("admin"):
            return self._refuse(stanza, frm, nick, "service-unavailable", "This room is full")
        now = self.clock.seconds()
        occupant = Occupant(nick, frm, default_role(affiliation, self.config.moderated), self._occupant_id(frm),
                            _payload(stanza), messages=Bucket(float(self.limits.occupant_burst), now),
                            presences=Bucket(float(self.limits.occupant_burst), now))
        # §7.2.3: the others' presence to the newcomer, the newcomer's to the others, then its own.
        for other in self.occupants.values():
            self._send_presence(other, occupant)
        self.occupants[nick] = occupant
        self.by_real[frm] = nick
        for other in self.occupants.values():
            if other is not occupant:
                self._send_presence(occupant, other)
        self._welcome(occupant, stanza, x, created)

    def _welcome(self, occupant: Occupant, stanza: domish.Element, x: domish.Element | None, created: bool) -> None:
        """What a joining occupant is sent after the others' presence: its own, history, subject."""
        frm, now = occupant.real, self.clock.seconds()
        codes = [s.SELF]
        if self.config.non_anonymous:
            codes.append(s.NON_ANONYMOUS)
        if self.archived:
            codes.append(s.LOGGED)  # §7.2.12: the archive is readable by others
        if created:
            codes.append(s.CREATED)
        self._send_presence(occupant, occupant, codes, id=stanza.getAttribute("id"))
        if self.avatar_hash:
            self._send_room_presence(occupant)
        # §7.2.15: history, then the subject (always, empty or not).
        for entry in self.history.select(Request.from_join(x), now, self.limits.history_length):
            message = _readdressed(entry.message, frm)
            delay = message.addElement((s.DELAY, "delay"))
            delay["from"] = self.jid.full()
            delay["stamp"] = format_stamp(entry.stamp)
            self._send(message, JID.parse(message["from"]), frm)
        subject = s.stanza("message", self._nick_jid(self.subject.by) if self.subject.by else self.jid, frm,
                           "groupchat", id=_new_id())
        subject.addElement("subject", content=self.subject.text)
        self._send(subject, JID.parse(subject["from"]), frm)

    def _change_nick(self, stanza: domish.Element, occupant: Occupant, nick: str) -> None:
        if nick in self.occupants or self._reserved_by_other(nick, occupant.real):
            return self._refuse(stanza, occupant.real, nick, "conflict", "That nickname is in use")
        if not occupant.presences.take(self.clock.seconds(), self.limits.occupant_rate, self.limits.occupant_burst):
            return self._refuse(stanza, occupant.real, nick, "resource-constraint",
                                "You are changing your nickname too fast; wait a moment")
        self._drop_held_presence(occupant)  # the new nick's presence carries the latest payload
        old = occupant.nick
        for other in list(self.occupants.values()):
            codes = [s.NEW_NICK] + ([s.SELF] if other is occupant else [])
            self._send_unavailable(occupant, other, codes, new_nick=nick)
        del self.occupants[old]
        occupant.nick = nick
        occupant.payload = _payload(stanza)
        self.occupants[nick] = occupant
        self.by_real[occupant.real] = nick
        self._broadcast_presence(occupant)

    def _broadcast_presence(self, occupant: Occupant, extra: list[str] | None = None, id: str | None = None) -> None:
        for other in list(self.occupants.values()):
            mine = other is occupant
            self._send_presence(occupant, other, list(extra or []) + ([s.SELF] if mine else []), id if mine else None)

    def _send_presence(self, about: Occupant, to: Occupant, codes: list[str] | None = None,
                       id: str | None = None) -> None:
        # The self-presence carries the id of the client's presence (§7.2.3).
        p = s.stanza("presence", self._nick_jid(about.nick), to.real, id=id)
        for el in about.payload:
            p.addChild(el)
        x = p.addChild(s.user_x())
        x.addChild(s.item(self.affiliation(about.real), about.role,
                          about.real if self._sees_jids(to) else None))
        for code in codes or ():
            x.addElement("status")["code"] = code
        p.addChild(s.occupant_id(about.occupant_id))
        self._send(p, self._nick_jid(about.nick), to.real)

    def _send_unavailable(self, about: Occupant, to: Occupant, codes: list[str], *, new_nick: str | None = None,
                          reason: str | None = None, actor: str | None = None,
                          destroy: domish.Element | None = None, payload: list[domish.Element] | None = None,
                          role: str = "none") -> None:
        p = s.stanza("presence", self._nick_jid(about.nick), to.real, "unavailable")
        for el in payload or ():
            p.addChild(el)
        x = p.addChild(s.user_x())
        affiliation = self.affiliation(about.real)
        x.addChild(s.item(affiliation, "none" if new_nick is None else about.role,
                          about.real if self._sees_jids(to) else None, new_nick, reason, actor))
        if destroy is not None:
            x.addChild(destroy)
        for code in codes:
            x.addElement("status")["code"] = code
        p.addChild(s.occupant_id(about.occupant_id))
        self._send(p, self._nick_jid(about.nick), to.real)

    def _leave(self, occupant: Occupant, codes: list[str], *, reason: str | None = None, actor: str | None = None,
               destroy: domish.Element | None = None, stanza_payload: list[domish.Element] | None = None) -> None:
        """*occupant* is out: everyone (it too, with 110) sees it leave."""
        for other in list(self.occupants.values()):
            extra = [s.SELF] if other is occupant else []
            self._send_unavailable(occupant, other, codes + extra, reason=reason, actor=actor, destroy=destroy,
                                   payload=stanza_payload)
        self._drop_held_presence(occupant)
        self.occupants.pop(occupant.nick, None)
        self.by_real.pop(occupant.real, None)
        if not self.occupants:
            self.on_empty(self)

    # -- messages ------------------------------------------------------------------------

    def message(self, stanza: domish.Element, frm: JID, nick: str | None) -> Settled:
        """Handle a message to the room or to an occupant; a Deferred when it is not
        settled yet (its archive row is being written)."""
        mtype = stanza.getAttribute("type")
        occupant = self.occupant_of(frm)
        if mtype == "error":
            # An occupant's server answering the room with an error: its client is gone (status 333).
            if occupant is not None and nick in (None, occupant.nick):
                self._leave(occupant, [s.TECHNICAL])
            return None
        if nick is None:
            x = s.child(stanza, s.USER, "x")
            if mtype != "groupchat" and x is not None and (s.child(x, s.USER, "invite") or s.child(x, s.USER, "decline")):
                self._invitation(stanza, frm, x, occupant)
                return None
            form_el = forms.find(stanza) if mtype != "groupchat" else None
            if form_el is not None:
                self._voice_request(form_el, occupant)
                return None
            if mtype != "groupchat":
                raise StanzaError("bad-request", "Messages to a room are of type groupchat")
            if occupant is None:
                raise StanzaError("not-acceptable", "Only occupants may send messages to the room")
            self._throttle(occupant)
            return self._groupchat(stanza, occupant)
        if occupant is None:
            raise StanzaError("not-acceptable", "Only occupants may send private messages")
        if mtype == "groupchat":
            raise StanzaError("bad-request", "A private message cannot be of type groupchat")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "No occupant has that nickname")
        self._may_address(occupant)
        self._throttle(occupant)
        pm = _copy_message(stanza, self._nick_jid(occupant.nick), target.real)
        pm.addChild(s.user_x())
        pm.addChild(s.occupant_id(occupant.occupant_id))
        self._send(pm, self._nick_jid(occupant.nick), target.real)
        return None

    def _may_address(self, occupant: Occupant) -> None:
        """muc#roomconfig_allowpm: may *occupant* send private messages and iqs to others?"""
        allowed = {"anyone": ("visitor", "participant", "moderator"), "participants": ("participant", "moderator"),
                   "moderators": ("moderator",), "none": ()}[self.config.allow_pm]
        if occupant.role not in allowed:
            raise StanzaError("forbidden", "This room does not let you address occupants privately")

    # -- iq between occupants (§17.3) --------------------------------------------

    def private_iq(self, stanza: domish.Element, frm: JID, nick: str) -> None:
        """An iq get/set to an occupant's address: a self-ping is answered (XEP-0410),
        anything else is passed on to the occupant's real JID from the asker's address."""
        occupant = self.occupant_of(frm)
        payload = next(iter(stanza.elements()), None)
        if payload is None:
            raise StanzaError("bad-request", "An iq needs a payload")
        if occupant is None:
            raise StanzaError("not-acceptable", "Only occupants may address occupants")
        if occupant.nick == nick and stanza.getAttribute("type") == "get" and (payload.uri, payload.name) == (
                ns.PING, "ping"):
            reply = s.stanza("iq", self._nick_jid(nick), frm, "result", stanza.getAttribute("id"))
            self._send(reply, self._nick_jid(nick), frm)
            return
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "No occupant has that nickname")
        if target is not occupant:
            self._may_address(occupant)
        if len(self.pending_iqs) >= MAX_PENDING_IQS:
            raise StanzaError("resource-constraint", "Too many queries are waiting in this room")
        self._throttle(occupant)
        # vCards belong to the account, not to the client (XEP-0054): asked of the bare JID.
        answerer = target.real.bare if (payload.uri, payload.name) == (s.VCARD, "vCard") else target.real
        new_id = _new_id()
        asker_address = self._nick_jid(occupant.nick)
        out = domish.Element((ns.CLIENT, "iq"))
        out["from"] = asker_address.full()
        out["to"] = answerer.full()
        out["type"] = stanza["type"]
        out["id"] = new_id
        if stanza.getAttribute("xml:lang") is not None:
            out["xml:lang"] = stanza["xml:lang"]
        for c in stanza.children:
            out.addChild(c)
        timeout = self.clock.callLater(IQ_TIMEOUT, self._iq_timed_out, new_id)
        self.pending_iqs[new_id] = PendingIq(frm, occupant.nick, stanza.getAttribute("id"), answerer, target.nick,
                                             timeout)
        self._send(out, asker_address, answerer)

    def iq_answer(self, stanza: domish.Element, frm: JID, nick: str) -> None:
        """A result or error to an occupant's address: the answer to an iq the room passed on."""
        pending = self.pending_iqs.get(stanza.getAttribute("id") or "")
        if pending is None or pending.answerer != frm or pending.asker_nick != nick:
            return  # not an answer to anything the room asked: dropped, as answers are never answered
        del self.pending_iqs[stanza["id"]]
        if pending.timeout.active():
            pending.timeout.cancel()
        frm_address = self._nick_jid(pending.answerer_nick)
        out = domish.Element((ns.CLIENT, "iq"))
        out["from"] = frm_address.full()
        out["to"] = pending.asker.full()
        out["type"] = stanza["type"]
        if pending.asker_id is not None:
            out["id"] = pending.asker_id
        for c in stanza.children:
            out.addChild(c)
        self._send(out, frm_address, pending.asker)

    def _iq_timed_out(self, new_id: str) -> None:
        pending = self.pending_iqs.pop(new_id, None)
        if pending is None:
            return
        frm_address = self._nick_jid(pending.answerer_nick)
        out = s.stanza("iq", frm_address, pending.asker, "error", pending.asker_id)
        error = StanzaError("remote-server-timeout", "The occupant did not answer").to_element()
        out.addChild(error)
        self._send(out, frm_address, pending.asker)

    def _cancel_pending_iqs(self) -> None:
        for pending in self.pending_iqs.values():
            if pending.timeout.active():
                pending.timeout.cancel()
        self.pending_iqs.clear()

    def _throttle(self, occupant: Occupant) -> None:
        if not occupant.messages.take(self.clock.seconds(), self.limits.occupant_rate, self.limits.occupant_burst):
            raise StanzaError("resource-constraint", "You are sending too fast; wait a moment")

    def _presence_update(self, occupant: Occupant, id: str | None) -> None:
        """Broadcast *occupant*'s new presence, or, past its presence rate, hold it and
        send the latest one when the rate allows: updates are coalesced, never refused
        (a presence error would tell the client it left the room)."""
        if occupant.held_presence is not None:
            return  # the held broadcast will carry this newer payload
        limits = self.limits
        if occupant.presences.take(self.clock.seconds(), limits.occupant_rate, limits.occupant_burst):
            self._broadcast_presence(occupant, id=id)
            return
        occupant.held_presence = self.clock.callLater(occupant.presences.wait(limits.occupant_rate),
                                                      self._release_presence, occupant)

    def _release_presence(self, occupant: Occupant) -> None:
        occupant.held_presence = None
        if self.occupants.get(occupant.nick) is occupant:
            self._presence_update(occupant, None)

    def _drop_held_presence(self, occupant: Occupant) -> None:
        if occupant.held_presence is not None:
            if occupant.held_presence.active():
                occupant.held_presence.cancel()
            occupant.held_presence = None

    def _groupchat(self, stanza: domish.Element, occupant: Occupant) -> Settled:
        subject = s.child(stanza, stanza.uri, "subject")
        has_body = s.child(stanza, stanza.uri, "body") is not None
        if occupant.role == "visitor":
            raise StanzaError("forbidden", "Visitors may not speak in this moderated room")
        if subject is not None and not has_body:
            if not (occupant.role == "moderator" or self.config.change_subject):
                raise StanzaError("forbidden", "Only moderators may change the subject of this room")
            self.subject = Subject(s.text(subject), occupant.nick)
            if self.config.persistent:
                self._persist_later()
        frm = self._nick_jid(occupant.nick)
        reflected = _copy_message(stanza, frm, None)
        reflected.addChild(s.occupant_id(occupant.occupant_id))
        written = None
        if subject is None or has_body:
            if self.archived and has_body:
                written = self.archive.record(self, self.archive.stamp(self, reflected))
            self.history.add(self.clock.seconds(), reflected)
        for other in list(self.occupants.values()):
            self._send(_readdressed(reflected, other.real), frm, other.real)
        return written

    def _voice_request(self, form_el: domish.Element, occupant: Occupant | None) -> None:
        """§7.13 and §8.6: a visitor asks for voice; moderators get the request as a
        form, and one who submits it with muc#request_allow true gives voice."""
        try:
            form = forms.parse(form_el)
        except FormError as e:
            raise StanzaError("bad-request", str(e)) from None
        if form.form_type != s.REQUEST:
            raise StanzaError("bad-request", "Unknown form")
        if occupant is None:
            raise StanzaError("not-acceptable", "Only occupants may ask or answer")
        if form.type == "submit" and form.value("muc#request_allow") is not None:
            if occupant.role != "moderator":
                raise StanzaError("forbidden", "Only moderators answer voice requests")
            try:
                allow = forms.boolean(form.value("muc#request_allow"))
            except FormError as e:
                raise StanzaError("bad-request", str(e)) from None
            target = self.occupants.get(form.value("muc#roomnick") or "")
            if allow and target is not None and target.role == "visitor":
                self._set_role(target, "participant", "", occupant.nick)
            return
        if form.type != "submit" or form.value("muc#role") != "participant":
            raise StanzaError("bad-request", "Ask for the participant role")
        if occupant.role != "visitor":
            return  # nothing to ask for
        request = forms.build("form", s.REQUEST, [
            forms.Field("muc#role", "list-single", ["participant"], "Requested role"),
            forms.Field("muc#jid", "jid-single", [occupant.real.full()], "User ID"),
            forms.Field("muc#roomnick", "text-single", [occupant.nick], "Room Nickname"),
            forms.Field("muc#request_allow", "boolean", ["false"], "Grant voice to this person?"),
        ])
        for moderator in [o for o in self.occupants.values() if o.role == "moderator"]:
            m = s.stanza("message", self.jid, moderator.real, id=_new_id())
            m.addChild(request)
            self._send(m, self.jid, moderator.real)

    def _invitation(self, stanza: domish.Element, frm: JID, x: domish.Element, occupant: Occupant | None) -> None:
        invite = s.child(x, s.USER, "invite")
        if invite is None:
            decline = s.child(x, s.USER, "decline")
            to = _jid_attr(decline, "to")
            assert decline is not None  # _jid_attr refused a missing one
            out = s.stanza("message", self.jid, to, id=stanza.getAttribute("id"))
            ox = out.addChild(s.user_x())
            d = ox.addElement("decline")
            d["from"] = frm.bare.full()
            reason = None if decline is None else s.child(decline, s.USER, "reason")
            if reason is not None:
                d.addElement("reason", content=s.text(reason))
            self._send(out, self.jid, to)
            return
        if occupant is None:
            raise StanzaError("not-acceptable", "Only occupants may invite")
        affiliation = self.affiliation(frm)
        if self.config.members_only and affiliation_rank(affiliation) < affiliation_rank("admin"):
            raise StanzaError("forbidden", "Only admins may invite to a members-only room")
        to = _jid_attr(invite, "to")
        if self.config.members_only and self.affiliations.get(to.bare.full(), "none") == "none":
            self.affiliations[to.bare.full()] = "member"
            if self.config.persistent:
                self._persist_later()
        out = s.stanza("message", self.jid, to, id=stanza.getAttribute("id"))
        ox = out.addChild(s.user_x())
        i = ox.addElement("invite")
        i["from"] = (frm.bare if self.config.non_anonymous else self._nick_jid(occupant.nick)).full()
        if s.child(invite, s.USER, "reason") is not None:
            i.addElement("reason", content=s.text(s.child(invite, s.USER, "reason")))
        if self.config.password:
            ox.addElement("password", content=self.config.password)
        direct = out.addElement((s.CONFERENCE, "x"))
        direct["jid"] = self.jid.full()
        self._send(out, self.jid, to)

    # -- iq ------------------------------------------------------------------------------

    async def iq(self, stanza: domish.Element, frm: JID, nick: str | None) -> domish.Element | None:
        """The result payload for an iq (None for an empty result); StanzaError to refuse."""
        itype = stanza.getAttribute("type")
        payload = next(iter(stanza.elements()), None)
        if payload is None:
            raise StanzaError("bad-request", "An iq needs a payload")
        key = (itype, payload.uri, payload.name)
        occupant = self.occupant_of(frm)
        if nick is not None:
            raise StanzaError("service-unavailable", "Queries to occupants go through private_iq")
        if key == ("get", ns.DISCO_INFO, "query"):
            if payload.getAttribute("node") == "x-roomuser-item":
                return self._reserved_nick_info(frm)
            if payload.getAttribute("node"):
                raise StanzaError("item-not-found")
            return self.disco_info()
        if payload.uri == s.REGISTER and payload.name == "query" and itype in ("get", "set"):
            return await (self._register_get(frm) if itype == "get" else self._register_set(payload, frm))
        if key == ("get", ns.DISCO_ITEMS, "query"):
            return domish.Element((ns.DISCO_ITEMS, "query"))
        if (payload.uri, payload.name) == (s.VCARD, "vCard") and itype in ("get", "set"):
            if itype == "get":
                return self._vcard_get()
            await self._vcard_set(payload, frm)
            return None
        if key == ("get", ns.PING, "ping"):
            return None
        if payload.uri == s.ADMIN and payload.name == "query" and itype in ("get", "set"):
            return await (self._admin_get(payload, frm) if itype == "get" else self._admin_set(payload, frm))
        if payload.uri == s.OWNER and payload.name == "query" and itype in ("get", "set"):
            return await (self._owner_get(frm) if itype == "get" else self._owner_set(payload, frm))
        raise StanzaError("service-unavailable", "Rooms do not answer that query")

    def disco_info(self) -> domish.Element:
        query = domish.Element((ns.DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"] = "conference"
        identity["type"] = "text"
        identity["name"] = self.config.name or (self.jid.user or "")
        archived = [s.MAM, s.SID] if self.archived else []
        for feature in sorted([s.MUC, ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING, s.OCCUPANT_ID, s.REGISTER, s.VCARD,
                               *archived,
                               "http://jabber.org/protocol/muc#self-ping-optimization",
                               *self.config.disco_features()]):
            query.addElement("feature")["var"] = feature
        query.addChild(info_form(self.config, len(self.occupants), self.subject.text, self.avatar_hash))
        return query

    # the room's vCard and avatar -------------------------------------------------------

    def _vcard_get(self) -> domish.Element:
        return avatar.load(self.vcard) if self.vcard else domish.Element((s.VCARD, "vCard"))

    async def _vcard_set(self, payload: domish.Element, frm: JID) -> None:
        if self.affiliation(frm) != "owner":
            raise StanzaError("forbidden", "Only owners may set the room's vCard")
        stored = avatar.dump(payload)
        if len(stored.encode("utf-8")) > self.limits.vcard_max_size:
            raise StanzaError("policy-violation",
                              f"A room's vCard may be at most {self.limits.vcard_max_size} bytes")
        new_hash = avatar.photo_hash(payload)
        empty = not any(True for _ in payload.elements())
        self.vcard = None if empty else stored
        changed = new_hash != self.avatar_hash
        self.avatar_hash = new_hash
        if self.config.persistent:
            await self._persist(self)
        if changed:
            for occupant in list(self.occupants.values()):
                self._send_room_presence(occupant)

    def _send_room_presence(self, to: Occupant) -> None:
        """The room's own presence, carrying its avatar hash (XEP-0153)."""
        p = s.stanza("presence", self.jid, to.real)
        p.addChild(avatar.update_x(self.avatar_hash))
        self._send(p, self.jid, to.real)

    # admin protocol (§8, §9) ------------------------------------------------------------

    async def _admin_get(self, payload: domish.Element, frm: JID) -> domish.Element:
        items = [i for i in payload.elements() if i.uri == s.ADMIN and i.name == "item"]
        if len(items) != 1:
            raise StanzaError("bad-request", "Ask for one list")
        wanted_affiliation = items[0].getAttribute("affiliation")
        wanted_role = items[0].getAttribute("role")
        asker = self.affiliation(frm)
        occupant = self.occupant_of(frm)
        result = domish.Element((s.ADMIN, "query"))
        if wanted_affiliation in AFFILIATIONS and wanted_affiliation != "none":
            if affiliation_rank(asker) < affiliation_rank("admin"):
                raise StanzaError("forbidden", "Only admins and owners may see affiliation lists")
            for jid, affiliation in sorted(self.affiliations.items()):
                if affiliation == wanted_affiliation:
                    el = result.addElement("item")
                    el["affiliation"] = affiliation
                    el["jid"] = jid
            return result
        if wanted_role in ("moderator", "participant", "visitor"):
            if occupant is None or occupant.role != "moderator":
                raise StanzaError("forbidden", "Only moderators may see role lists")
            for o in sorted(self.occupants.values(), key=lambda o: o.nick):
                if o.role == wanted_role:
                    el = result.addElement("item")
                    el["role"] = o.role
                    el["nick"] = o.nick
                    el["affiliation"] = self.affiliation(o.real)
                    el["jid"] = o.real.full()
            return result
        raise StanzaError("bad-request", "Ask for an affiliation or a role")

    async def _admin_set(self, payload: domish.Element, frm: JID) -> None:
        items = [i for i in payload.elements() if i.uri == s.ADMIN and i.name == "item"]
        if not items:
            raise StanzaError("bad-request", "No item")
        actor_affiliation = self.affiliation(frm)
        actor = self.occupant_of(frm)
        actor_nick = actor.nick if actor is not None else None
        changes: list[tuple[str, Any, str, str]] = []  # (kind, target, value, reason)
        for el in items:
            reason = s.text(s.child(el, s.ADMIN, "reason")) or None
            if el.getAttribute("affiliation") is not None:
                new = el["affiliation"]
                if new not in AFFILIATIONS:
                    raise StanzaError("bad-request", f"Unknown affiliation {new!r}")
                if el.getAttribute("jid"):
                    target = _jid_attr(el, "jid").bare.full()
                elif el.getAttribute("nick") in self.occupants:
                    target = self.occupants[el["nick"]].real.bare.full()
                else:
                    raise StanzaError("bad-request", "An affiliation change names a jid")
                now = self.affiliations.get(target, "none")
                if not may_set_affiliation(actor_affiliation, now, new):
                    raise StanzaError("not-allowed" if affiliation_rank(actor_affiliation) >= 3 else "forbidden",
                                      "You may not make that affiliation change")
                changes.append(("affiliation", target, new, reason or ""))
            elif el.getAttribute("role") is not None:
                new = el["role"]
                target_occupant = self.occupants.get(el.getAttribute("nick") or "")
                if new not in ROLES:
                    raise StanzaError("bad-request", f"Unknown role {new!r}")
                if target_occupant is None:
                    raise StanzaError("item-not-found", "No occupant has that nickname")
                if actor is None or not may_set_role(actor.role, actor_affiliation,
                                                     self.affiliation(target_occupant.real), new):
                    raise StanzaError("not-allowed" if actor is not None and actor.role == "moderator"
                                      else "forbidden", "You may not make that role change")
                changes.append(("role", target_occupant, new, reason or ""))
            else:
                raise StanzaError("bad-request", "An item changes an affiliation or a role")
        owners_after = {j for j, a in self.affiliations.items() if a == "owner"}
        for kind, target, new, _ in changes:
            if kind == "affiliation":
                owners_after.discard(target)
                if new == "owner":
                    owners_after.add(target)
        if not owners_after and self.owners():
            raise StanzaError("conflict", "A room keeps at least one owner")
        for kind, target, new, reason in changes:
            if kind == "affiliation":
                self._set_affiliation(target, new, reason, actor_nick)
            else:
                self._set_role(target, new, reason, actor_nick)
        if self.config.persistent and any(kind == "affiliation" for kind, *_ in changes):
            await self._persist(self)

    def _set_affiliation(self, bare: str, new: str, reason: str, actor: str | None) -> None:
        if new == "none":
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = new
        for occupant in [o for o in self.occupants.values() if o.real.bare.full() == bare]:
            if new == "outcast":
                self._leave(occupant, [s.BANNED], reason=reason or None, actor=actor)
            elif self.config.members_only and new == "none":
                self._leave(occupant, [s.AFFILIATION_LOST], reason=reason or None, actor=actor)
            else:
                occupant.role = default_role(new, self.config.moderated)
                self._broadcast_presence(occupant)

    def _set_role(self, occupant: Occupant, new: str, reason: str, actor: str | None) -> None:
        if new == "none":
            self._leave(occupant, [s.KICKED], reason=reason or None, actor=actor)
            return
        occupant.role = new
        self._broadcast_presence(occupant)

    # registration: reserved nicknames (§7.10) --------------------------------------------

    def _reserved_nick_info(self, frm: JID) -> domish.Element:
        """§7.12: the nickname *frm* reserved, as the name of an identity (none if none)."""
        query = domish.Element((ns.DISCO_INFO, "query"))
        query["node"] = "x-roomuser-item"
        nick = self.nicks.get(frm.bare.full())
        if nick:
            identity = query.addElement("identity")
            identity["category"] = "conference"
            identity["type"] = "text"
            identity["name"] = nick
        return query

    def _may_register(self, frm: JID) -> None:
        affiliation = self.affiliation(frm)
        if affiliation == "outcast":
            raise StanzaError("forbidden", "You are banned from this room")
        if self.config.members_only and affiliation_rank(affiliation) < affiliation_rank("member"):
            raise StanzaError("not-allowed", "Only members may register with this room; ask an admin")

    async def _register_get(self, frm: JID) -> domish.Element:
        self._may_register(frm)
        query = domish.Element((s.REGISTER, "query"))
        nick = self.nicks.get(frm.bare.full())
        if nick is not None:
            query.addElement("registered")
            query.addElement("username", content=nick)
            return query
        query.addElement("instructions", content="Choose the nickname to reserve in this room.")
        query.addChild(forms.build("form", s.REGISTER_FORM, [
            forms.Field("muc#register_roomnick", "text-single", [], "Nickname")]))
        return query

    async def _register_set(self, payload: domish.Element, frm: JID) -> None:
        self._may_register(frm)
        bare = frm.bare.full()
        if s.child(payload, s.REGISTER, "remove") is not None:
            if self.nicks.pop(bare, None) is None:
                raise StanzaError("item-not-found", "You have no nickname reserved here")
            if self.affiliations.get(bare) == "member" and not self.config.members_only:
                del self.affiliations[bare]
            if self.config.persistent:
                await self._persist(self)
            return
        x = forms.find(payload)
        try:
            form = forms.parse(x) if x is not None else None
        except FormError as e:
            raise StanzaError("bad-request", str(e)) from None
        if form is None or form.type != "submit" or form.form_type not in (None, s.REGISTER_FORM):
            raise StanzaError("bad-request", f"Submit a {s.REGISTER_FORM} form")
        nick = (form.value("muc#register_roomnick") or "").strip()
        try:
            nick = prep_resource(nick) if nick else ""
        except InvalidJID:
            raise StanzaError("not-acceptable", "That nickname cannot be used") from None
        if not nick:
            raise StanzaError("not-acceptable", "A nickname is required")
        taken = self.occupants.get(nick)
        if self._reserved_by_other(nick, frm) or (taken is not None and taken.real.bare.full() != bare):
            raise StanzaError("conflict", "That nickname is taken")
        self.nicks[bare] = nick
        if self.affiliation(frm) == "none":
            self.affiliations[bare] = "member"
            for occupant in [o for o in self.occupants.values() if o.real.bare.full() == bare]:
                occupant.role = default_role("member", self.config.moderated) if occupant.role != "moderator" \
                    else occupant.role
                self._broadcast_presence(occupant)
        if self.config.persistent:
            await self._persist(self)

    # owner protocol (§10) -----------------------------------------------------------

    async def _owner_get(self, frm: JID) -> domish.Element:
        if self.affiliation(frm) != "owner":
            raise StanzaError("forbidden", "Only owners may configure the room")
        query = domish.Element((s.OWNER, "query"))
        query.addChild(config_form(self.config, self.limits.max_occupants))
        return query

    async def _owner_set(self, payload: domish.Element, frm: JID) -> None:
        if self.affiliation(frm) != "owner":
            raise StanzaError("forbidden", "Only owners may configure or destroy the room")
        destroy = s.child(payload, s.OWNER, "destroy")
        if destroy is not None:
            await self.destroy(destroy)
            return
        x = forms.find(payload)
        if x is None:
            raise StanzaError("bad-request", "Submit a form or destroy the room")
        try:
            form = forms.parse(x)
        except FormError as e:
            raise StanzaError("bad-request", str(e)) from None
        if form.type == "cancel":
            if self.locked:
                # §10.1.3: cancelling the initial configuration destroys the new room.
                await self.destroy(None)
            return
        if form.type != "submit":
            raise StanzaError("bad-request", "Submit the form")
        old = self.config
        try:
            new = apply_form(old, form, self.limits.max_occupants)
        except FormError as e:
            raise StanzaError("not-acceptable", str(e)) from None
        self.config = new
        self.locked = False
        if new.persistent or old.persistent:
            await self._persist(self)
        self._config_changed(old, new)

    def _config_changed(self, old: RoomConfig, new: RoomConfig) -> None:
        if new.members_only and not old.members_only:
            for occupant in list(self.occupants.values()):
                if affiliation_rank(self.affiliation(occupant.real)) < affiliation_rank("member"):
                    self._leave(occupant, [s.MEMBERS_ONLY_NOW])
        codes = [s.CONFIG_CHANGED]
        if new.non_anonymous != old.non_anonymous:
            codes.append(s.NOW_NON_ANONYMOUS if new.non_anonymous else s.NOW_SEMI_ANONYMOUS)
        if self.archive is not None and new.archiving != old.archiving:
            codes.append(s.LOGGED if new.archiving else s.NOT_LOGGED)
        for occupant in list(self.occupants.values()):
            m = s.stanza("message", self.jid, occupant.real, "groupchat", id=_new_id())
            m.addChild(s.user_x(codes))
            self._send(m, self.jid, occupant.real)
        if new.moderated != old.moderated:
            for occupant in list(self.occupants.values()):
                role = default_role(self.affiliation(occupant.real), new.moderated)
                if occupant.role != "moderator" and role != occupant.role:
                    occupant.role = role
                    self._broadcast_presence(occupant)

    async def destroy(self, destroy: domish.Element | None) -> None:
        """End the room: every occupant leaves, told where to go if the owner said (§10.9)."""
        self.destroyed = True
        notice = domish.Element((s.USER, "destroy"))
        if destroy is not None:
            if destroy.getAttribute("jid"):
                notice["jid"] = _jid_attr(destroy, "jid").full()
            reason = s.child(destroy, s.OWNER, "reason")
            if reason is not None:
                notice.addElement("reason", content=s.text(reason))
        for occupant in list(self.occupants.values()):
            self._send_unavailable(occupant, occupant, [s.SELF], destroy=notice)
        for occupant in list(self.occupants.values()):
            for other in self.occupants.values():
                if other is not occupant:
                    self._send_unavailable(occupant, other, [], destroy=notice)
        for occupant in self.occupants.values():
            self._drop_held_presence(occupant)
        self.occupants.clear()
        self.by_real.clear()
        self._cancel_pending_iqs()
        await self._persist(self)
        self.on_empty(self)

    def shutdown(self) -> None:
        """The server stops: every occupant is told with 332."""
        for occupant in list(self.occupants.values()):
            for other in self.occupants.values():
                self._send_unavailable(occupant, other, [s.SHUTDOWN] + ([s.SELF] if other is occupant else []))
        for occupant in self.occupants.values():
            self._drop_held_presence(occupant)
        self.occupants.clear()
        self.by_real.clear()
        self._cancel_pending_iqs()

    def _persist_later(self) -> None:
        async def save() -> None:
            await self._persist(self)
        background(save(), "muc room save")


def _payload(stanza: domish.Element) -> list[domish.Element]:
    """What a client's presence carries that the room passes on: all but the MUC parts."""
    return [c for c in stanza.elements()
            if c.uri not in (s.MUC, s.USER, s.OCCUPANT_ID) and c.name != "error"]


def _copy_message(stanza: domish.Element, frm: JID, to: JID | None) -> domish.Element:
    out = domish.Element((ns.CLIENT, "message"))
    out["from"] = frm.full()
    if to is not None:
        out["to"] = to.full()
    for key in ("type", "id", "xml:lang"):
        if stanza.getAttribute(key) is not None:
            out[key] = stanza[key]
    for c in stanza.elements():
        # Occupant and stanza ids from the sender could be forged (XEP-0421 §4, XEP-0359 §5): dropped.
        if c.uri in (s.OCCUPANT_ID, s.USER, s.SID):
            continue
        out.addChild(c)
    return out


def _readdressed(element: domish.Element, to: JID) -> domish.Element:
    """A copy of *element* for *to*; the children are shared, never changed."""
    out = domish.Element((element.uri, element.name))
    out.attributes.update(element.attributes)
    out["to"] = to.full()
    for c in element.children:
        out.addChild(c)
    return out


def _jid_attr(element: domish.Element | None, name: str) -> JID:
    value = None if element is None else element.getAttribute(name)
    if not value:
        raise StanzaError("bad-request", f"'{name}' is missing")
    try:
        return JID.parse(value)
    except InvalidJID:
        raise StanzaError("jid-malformed", f"'{name}' is not a valid JID") from None


def _new_id() -> str:
    return os.urandom(8).hex()
