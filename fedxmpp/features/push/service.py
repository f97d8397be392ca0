"""XEP-0357 push: registrations, what triggers a notification, and sending it.

See the package docstring for the behaviour; :mod:`.summary` decides what wakes
a device and builds the notification.
"""

from __future__ import annotations

import json
import secrets
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.config import PushConfig
from fedxmpp.features import forms
from fedxmpp.features._shared import background, spawn
from fedxmpp.features.push.summary import MUC_USER, PUBLISH_OPTIONS, PUSH, Wake, notification, waking
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.im.offline import StoredOffline
from fedxmpp.im.sessions import BoundSession
from fedxmpp.session import Hibernation
from fedxmpp.storage import NoSuchAccount, PushRegistration, StorageError
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID, InvalidJID

log = Logger()

ID_PREFIX = "push-"
# Users whose registrations are kept in memory (read from storage on a miss).
CACHE_SIZE = 10_000
# A client's publish options: at most this many fields, this many bytes as stored.
MAX_OPTION_FIELDS = 32
MAX_OPTIONS_SIZE = 4096
# Rooms whose nickname is remembered per session (for mentions).
MAX_ROOMS = 1000
# Errors that say the app server could not be reached, not that it refused: temporary.
UNREACHABLE = frozenset({"remote-server-not-found", "remote-server-timeout"})

Key = tuple[str, str]  # (service, node)


@dataclass
class Device:
    """The notifications of one registration: what is counted, what is in flight,
    when the next may go."""

    user: JID
    registration: PushRegistration
    #: Messages the device was woken for since it last enabled push or resumed.
    count: int = 0
    last: Wake | None = None
    #: The id of the notification waiting for its answer, and the count it carried.
    in_flight: str | None = None
    sent_count: int = 0
    reply_timer: Any = None
    #: The next notification, scheduled (coalescing what arrives meanwhile).
    due: Any = None
    not_before: float = 0.0
    #: Temporary failures of the notification being sent.
    failures: int = 0
    gone: bool = False

    @property
    def key(self) -> Key:
        return self.registration.key


@dataclass
class _SessionPush:
    """What the feature knows of one client session: the registration it enabled,
    and its nicknames in the rooms it joined."""

    key: Key | None = None
    nicks: dict[JID, str] = field(default_factory=dict)


class Push:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._cache: OrderedDict[JID, list[PushRegistration]] = OrderedDict()
        self._devices: dict[tuple[JID, Key], Device] = {}
        self._in_flight: dict[str, Device] = {}
        self._sessions: weakref.WeakKeyDictionary[Any, _SessionPush] = weakref.WeakKeyDictionary()

    @property
    def cfg(self) -> PushConfig:
        return self.ctx.config.push

    def register(self, hooks: Hooks) -> None:
        self.ctx.disco.account_features.add(PUSH)
        hooks.add(f"iq-set/bare/{PUSH}", self._iq_set)
        hooks.add("iq-result/bare", self._answer, step="push")
        hooks.add("iq-error/bare", self._answer, step="push")
        hooks.add("presence/full", self._room_presence, step="push")
        hooks.add("offline/stored", self._stored_offline)
        hooks.add("c2s/hibernating", self._hibernating)
        hooks.add("c2s/hibernating-queued", self._queued)
        hooks.add("c2s/resumed", self._resumed)
        hooks.add("account/removed", self._account_removed)

    # -- enable / disable ---------------------------------------------------------------

    def _iq_set(self, event: StanzaEvent) -> bool:
        command = event.payload()
        session = self.ctx.sessions.get(event.frm) if event.frm.resource is not None else None
        if session is None or event.frm.bare != event.to:
            event.error("not-allowed", "Only a client of this account can change its push notifications")
            return True
        if command is None or command.name not in ("enable", "disable"):
            event.error("bad-request", "Expected <enable/> or <disable/>")
            return True
        text = command.getAttribute("jid")
        if not text:
            event.error("bad-request", "The app server's 'jid' is missing")
            return True
        try:
            service = JID.parse(text)
        except InvalidJID:
            event.error("jid-malformed", "The app server's 'jid' is not a valid address")
            return True
        if service.bare == event.to:
            event.error("not-acceptable", "The app server cannot be the account itself")
            return True
        node = command.getAttribute("node")
        if command.name == "disable":
            spawn(event, self._disable(event, session, service.full(), node), "Disabling push")
            return True
        try:
            options = _publish_options(command)
        except forms.FormError as e:
            event.error("bad-request", str(e))
            return True
        registration = PushRegistration(service.full(), node or "", options, int(self.ctx.clock.seconds()))
        spawn(event, self._enable(event, session, registration), "Enabling push")
        return True

    async def _enable(self, event: StanzaEvent, session: BoundSession, registration: PushRegistration) -> None:
        user = event.to
        try:
            now = await self.ctx.storage.push.enable(user.user, user.host, registration, self.cfg.max_devices)
        except NoSuchAccount:
            event.error("item-not-found")
            return
        self._cache_put(user, now)
        self._session(session).key = registration.key
        self._forget_device(user, registration.key)  # counts start again for this device
        for device_key in [k for u, k in self._devices if u == user]:
            if device_key not in {r.key for r in now}:
                self._forget_device(user, device_key)
        log.info("Push enabled for {jid} through {service}", jid=session.address.full(), service=registration.service)
        event.reply()

    async def _disable(self, event: StanzaEvent, session: BoundSession, service: str, node: str | None) -> None:
        user = event.to
        await self.ctx.storage.push.disable(user.user, user.host, service, node)
        self._forget_registrations(user, service, node)
        log.info("Push disabled for {jid} at {service}", jid=session.address.full(), service=service)
        event.reply()

    def _forget_registrations(self, user: JID, service: str, node: str | None) -> None:
        def matches(key: Key) -> bool:
            return key[0] == service and (node is None or key[1] == node)
        cached = self._cache.get(user)
        if cached is not None:
            self._cache[user] = [r for r in cached if not matches(r.key)]
        for device_user, key in list(self._devices):
            if device_user == user and matches(key):
                self._forget_device(user, key)
        for session in self.ctx.sessions.resources(user):
            known = self._sessions.get(session)
            if known is not None and known.key is not None and matches(known.key):
                known.key = None

    def _account_removed(self, user: JID) -> None:
        self._cache.pop(user, None)
        for device_user, key in list(self._devices):
            if device_user == user:
                self._forget_device(user, key)

    # -- registrations ----------------------------------------------------------------------

    async def _registrations(self, user: JID) -> list[PushRegistration]:
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return cached
        found = await self.ctx.storage.push.registrations(user.user or "", user.host)
        if user in self._cache:  # changed by an enable or disable while this was read
            return self._cache[user]
        self._cache_put(user, found)
        return found

    def _cache_put(self, user: JID, registrations: list[PushRegistration]) -> None:
        self._cache[user] = list(registrations)
        self._cache.move_to_end(user)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _session(self, session: Any) -> _SessionPush:
        known = self._sessions.get(session)
        if known is None:
            known = self._sessions[session] = _SessionPush()
        return known

    def _live_keys(self, user: JID) -> set[Key]:
        """The registrations whose device has a session bound now (connected or
        hibernating): those are woken, if at all, through their session."""
        keys = set()
        for session in self.ctx.sessions.resources(user):
            known = self._sessions.get(session)
            if known is not None and known.key is not None:
                keys.add(known.key)
        return keys

    # -- what triggers a notification --------------------------------------------------------

    def _stored_offline(self, stored: StoredOffline) -> bool:
        """A message was committed to offline storage: every device of the user
        without a session is woken, unless the message is one its own session,
        which had push, never acknowledged (its device was woken for it then)."""
        if stored.unacked_by is not None:
            known = self._sessions.get(stored.unacked_by)
            if known is not None and known.key is not None:
                return False
        wake = waking(stored.stanza)
        if wake is not None:
            background(self._wake_offline(stored.user, wake), "Push for an offline message")
        return False

    async def _wake_offline(self, user: JID, wake: Wake) -> None:
        try:
            registrations = await self._registrations(user)
        except StorageError as e:
            log.error("Could not read the push registrations of {user}: {error}", user=user.full(), error=str(e))
            return
        live = self._live_keys(user)
        for registration in registrations:
            if registration.key not in live:
                self._notify(user, registration, wake, 1)

    def _hibernating(self, hibernation: Hibernation) -> bool:
        """A session with push enabled stays resumable for the push hibernation
        timeout, and its device is woken for what it had not acknowledged."""
        session = hibernation.session
        known = self._sessions.get(session)
        if known is None or known.key is None:
            return False
        hibernation.timeout = max(hibernation.timeout, self.cfg.hibernation_timeout)
        wakes = [w for w in (self._waking_for(known, s) for s in hibernation.unacknowledged) if w is not None]
        if wakes:
            background(self._wake_device(session.bare, known.key, wakes[-1], len(wakes)),
                       "Push for a hibernating session")
        return False

    def _queued(self, payload: tuple[Any, domish.Element, Deferred[None] | None]) -> bool:
        session, stanza, kept = payload
        known = self._sessions.get(session)
        if known is None or known.key is None:
            return False
        wake = self._waking_for(known, stanza)
        if wake is not None:
            background(self._wake_device(session.bare, known.key, wake, 1, after=kept),
                       "Push for a hibernating session")
        return False

    def _waking_for(self, known: _SessionPush, stanza: domish.Element) -> Wake | None:
        nick = None
        if stanza.getAttribute("type") == "groupchat":
            try:
                room = JID.parse(stanza.getAttribute("from", "")).bare
            except InvalidJID:
                return None
            nick = known.nicks.get(room)
        return waking(stanza, nick)

    async def _wake_device(self, user: JID, key: Key, wake: Wake, n: int, after: Deferred[None] | None = None) -> None:
        if after is not None:
            await after  # committed first: the device finds the message when it comes back
        try:
            registrations = await self._registrations(user)
        except StorageError as e:
            log.error("Could not read the push registrations of {user}: {error}", user=user.full(), error=str(e))
            return
        for registration in registrations:
            if registration.key == key:
                self._notify(user, registration, wake, n)

    def _resumed(self, session: Any) -> bool:
        known = self._sessions.get(session)
        if known is not None and known.key is not None:
            self._forget_device(session.bare, known.key)
        return False

    def _room_presence(self, event: StanzaEvent) -> bool:
        """Remember a session's nickname in each room from the room's self-presence
        (XEP-0045 status 110), which carries the nickname the room gave."""
        x = next((c for c in event.stanza.elements() if c.uri == MUC_USER and c.name == "x"), None)
        if x is None or not any(c.name == "status" and c.getAttribute("code") == "110" for c in x.elements()):
            return False
        session = self.ctx.sessions.get(event.to)
        if session is None or event.frm.resource is None:
            return False
        nicks = self._session(session).nicks
        room = event.frm.bare
        if event.type == "unavailable":
            nicks.pop(room, None)
        elif room in nicks or len(nicks) < MAX_ROOMS:
            nicks[room] = event.frm.resource
        return False

    # -- sending, coalescing, retrying ---------------------------------------------------------

    def _notify(self, user: JID, registration: PushRegistration, wake: Wake, n: int) -> None:
        key = (user, registration.key)
        device = self._devices.get(key)
        if device is None:
            device = self._devices[key] = Device(user, registration)
        device.registration = registration
        device.count += n
        device.last = wake
        self._schedule(device)

    def _schedule(self, device: Device, delay: float | None = None) -> None:
        """Send the device's next notification when it may go: one at a time, at
        most one per min_interval; what arrives meanwhile goes in the next."""
        if device.in_flight is not None or device.due is not None or device.gone:
            return
        if delay is None:
            delay = max(0.0, device.not_before - self.ctx.clock.seconds())
        device.due = self.ctx.clock.callLater(delay, self._send, device)

    def _send(self, device: Device) -> None:
        device.due = None
        if device.gone:
            return
        iq_id = ID_PREFIX + secrets.token_hex(8)
        registration = device.registration
        iq = notification(device.user, registration.service, registration.node, registration.options, iq_id,
                          count=device.count, last=device.last, include_sender=self.cfg.include_sender,
                          include_body=self.cfg.include_body)
        device.in_flight = iq_id
        device.sent_count = device.count
        device.reply_timer = self.ctx.clock.callLater(self.cfg.reply_timeout, self._timed_out, device, iq_id)
        self._in_flight[iq_id] = device
        log.debug("Push notification {id} for {user} to {service}", id=iq_id, user=device.user.full(),
                  service=registration.service)
        try:
            service = JID.parse(registration.service)
        except InvalidJID:  # pragma: no cover - checked when enabled
            self._permanent(device, "jid-malformed")
            return
        self.ctx.router.route(iq, device.user.bare, service)

    def _answer(self, event: StanzaEvent) -> bool:
        """``iq-result/bare`` and ``iq-error/bare``: the app server's answer to a
        notification is consumed here."""
        iq_id = event.stanza.getAttribute("id") or ""
        if not iq_id.startswith(ID_PREFIX):
            return False
        device = self._in_flight.get(iq_id)
        if device is None or event.frm.full() != device.registration.service:
            return True  # too late, or not from whom it was sent to: dropped
        self._settle(device, iq_id)
        if event.type == "result":
            device.failures = 0
            self._sent_ok(device)
            return True
        error_type, condition = _error_of(event.stanza)
        if error_type == "wait" or condition in UNREACHABLE:
            self._temporary(device, condition or error_type or "error")
        else:
            self._permanent(device, condition or "undefined-condition")
        return True

    def _settle(self, device: Device, iq_id: str) -> None:
        self._in_flight.pop(iq_id, None)
        device.in_flight = None
        timer, device.reply_timer = device.reply_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _sent_ok(self, device: Device) -> None:
        """The notification is over (answered, or given up): the next waits its turn."""
        device.not_before = self.ctx.clock.seconds() + self.cfg.min_interval
        if device.count != device.sent_count:
            self._schedule(device)  # what arrived while this one was out

    def _timed_out(self, device: Device, iq_id: str) -> None:
        device.reply_timer = None
        if self._in_flight.get(iq_id) is not device:
            return
        self._settle(device, iq_id)
        self._temporary(device, "no answer")

    def _temporary(self, device: Device, why: str) -> None:
        device.failures += 1
        if device.failures >= self.cfg.max_attempts:
            log.warn("Push for {user} to {service} failed {n} times ({why}); given up until the next message",
                     user=device.user.full(), service=device.registration.service, n=device.failures, why=why)
            device.failures = 0
            self._sent_ok(device)
            return
        delay = self.cfg.retry_delay * 2 ** (device.failures - 1)
        log.info("Push for {user} to {service} failed ({why}); trying again in {delay:.0f} s",
                 user=device.user.full(), service=device.registration.service, why=why, delay=delay)
        self._schedule(device, delay)

    def _permanent(self, device: Device, condition: str) -> None:
        """The app server refused: the registration is disabled (XEP-0357 §7.1)."""
        user, registration = device.user, device.registration
        log.info("Push for {user} to {service} refused ({condition}): registration disabled",
                 user=user.full(), service=registration.service, condition=condition)
        self._forget_registrations(user, registration.service, registration.node)
        background(self.ctx.storage.push.disable(user.user or "", user.host, registration.service,
                                                 registration.node),
                   "Disabling a refused push registration")

    def _forget_device(self, user: JID, key: Key) -> None:
        device = self._devices.pop((user, key), None)
        if device is None:
            return
        device.gone = True
        if device.due is not None and device.due.active():
            device.due.cancel()
        device.due = None
        if device.in_flight is not None:
            self._settle(device, device.in_flight)


def _publish_options(command: domish.Element) -> dict[str, list[str]]:
    """The fields of the enable request's publish-options form (FORM_TYPE left
    out); FormError when the form is of another kind or too large."""
    form = forms.find(command)
    if form is None:
        return {}
    options: dict[str, list[str]] = {}
    form_type = None
    for f in form.elements():
        if f.uri != forms.DATA or f.name != "field":
            continue
        var = f.getAttribute("var")
        if not var:
            continue
        values = [str(v) for v in f.elements() if v.uri == forms.DATA and v.name == "value"]
        if var == "FORM_TYPE":
            form_type = values[0] if values else None
            continue
        options[var] = values
    if form_type != PUBLISH_OPTIONS:
        raise forms.FormError(f"The form's FORM_TYPE must be {PUBLISH_OPTIONS}")
    if len(options) > MAX_OPTION_FIELDS or len(json.dumps(options)) > MAX_OPTIONS_SIZE:
        raise forms.FormError("The publish options are too large")
    return options


def _error_of(stanza: domish.Element) -> tuple[str | None, str | None]:
    for child in stanza.elements():
        if child.name == "error":
            condition = next((c.name for c in child.elements() if c.uri == ns.STANZA_ERRORS and c.name != "text"),
                             None)
            return child.getAttribute("type"), condition
    return None, None
