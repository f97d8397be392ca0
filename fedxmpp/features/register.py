"""XEP-0077: In-Band Registration.

New accounts (off by default; ``[registration] enabled = true``): after TLS and
before authentication the stream features carry
``<register xmlns='http://jabber.org/features/iq-register'/>``, and a client may
ask for the fields (username, password) and send them in an iq set.  The
username is prepared with the PRECIS UsernameCaseMapped profile.  Errors:
``<conflict/>`` for a taken username, ``<not-acceptable/>`` for a missing or
empty field, a username that is not a valid localpart, a password shorter than
``[auth] min_password_length`` or one the server rejects, ``<policy-violation/>`` when the client's IP address has created
``max_per_ip`` accounts within ``period`` seconds (counted in a bounded table).
With registration off none of this is offered and such an iq before
authentication stays a ``<not-authorized/>`` stream error.

Authenticated users may always, with an iq to their server (or to no one):

* get: ``<registered/>`` and their username;
* set ``<username/><password/>``: change their password (an empty or too short
  one is ``<not-acceptable/>``, another user's name ``<not-allowed/>``);
* set ``<remove/>``: delete their account; the iq is answered, then every session
  of the account is closed with a ``<not-authorized/>`` stream error and the
  "account/removed" hook is fired with the bare JID.

Error replies never repeat the request, so a password is never sent back.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Coroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.features._shared import child, text_of
from fedxmpp.hooks import Hooks
from fedxmpp.im.accounts import remove_account
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.credentials import InvalidPassword, check_password_length
from fedxmpp.storage.errors import AccountExists, NoSuchAccount
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError
from fedxmpp.xml.jid import JID, InvalidJID, prep_local

log = Logger()

REGISTER = "jabber:iq:register"
STREAM_FEATURE = "http://jabber.org/features/iq-register"
INSTRUCTIONS = "Choose a username and password to register with this server."
# Addresses remembered by the rate limit; the oldest is forgotten first.
MAX_ADDRESSES = 10_000


class RateLimit:
    """At most *limit* events per address in any *period* seconds, for at most
    *max_addresses* addresses at a time."""

    def __init__(self, clock: Any, limit: int, period: float, max_addresses: int = MAX_ADDRESSES) -> None:
        self.clock = clock
        self.limit = limit
        self.period = period
        self.max_addresses = max_addresses
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, address: str) -> bool:
        """Count one event for *address*, unless that would exceed the limit."""
        now = self.clock.seconds()
        times = self._events.get(address)
        if times is None:
            times = self._events[address] = deque()
            while len(self._events) > self.max_addresses:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(address)
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def give_back(self, address: str) -> None:
        """Undo the last :meth:`take` (the registration did not happen)."""
        times = self._events.get(address)
        if times:
            times.pop()

    def __len__(self) -> int:
        return len(self._events)


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(REGISTER)
    settings = ctx.config.registration

    # -- authenticated users: their own account ----------------------------------------

    def own_account(event: StanzaEvent) -> bool:
        frm, to = event.frm, event.to
        return frm.user is not None and frm.host == to.host and (to.user is None or frm.bare == to)

    def account_get(event: StanzaEvent) -> bool:
        if not own_account(event):
            event.error("service-unavailable")
            return True
        query = domish.Element((REGISTER, "query"))
        query.addElement("registered")
        query.addElement("username", content=event.frm.user)
        event.reply(query)
        return True

    def account_set(event: StanzaEvent) -> bool:
        if not own_account(event):
            _error(event, StanzaError("service-unavailable"))
            return True
        query = event.payload()
        assert query is not None
        fields = [c for c in query.elements()]
        if child(query, REGISTER, "remove") is not None:
            if len(fields) != 1:
                _error(event, StanzaError("bad-request", "<remove/> must be the only element"))
            else:
                _run(remove(event), "account removal", lambda: _error(event, StanzaError("internal-server-error")))
            return True
        password = child(query, REGISTER, "password")
        if password is None:
            _error(event, StanzaError("bad-request", "Send <password/> to change it, or <remove/>"))
            return True
        username = child(query, REGISTER, "username")
        if username is not None and text_of(username).strip():
            try:
                named = prep_local(text_of(username).strip())
            except InvalidJID:
                named = None
            if named != event.frm.user:
                _error(event, StanzaError("not-allowed", "You may only change your own password"))
                return True
        if not text_of(password):
            _error(event, StanzaError("not-acceptable", "The new password is empty"))
            return True
        refused = too_short(text_of(password))
        if refused:
            _error(event, StanzaError("not-acceptable", refused))
            return True
        _run(change_password(event, text_of(password)), "password change",
             lambda: _error(event, StanzaError("internal-server-error")))
        return True

    async def change_password(event: StanzaEvent, password: str) -> None:
        user = event.frm.bare
        try:
            await ctx.storage.accounts.set_password(user.user, user.host, password)
        except InvalidPassword as e:
            _error(event, StanzaError("not-acceptable", str(e)))
            return
        except NoSuchAccount:
            _error(event, StanzaError("registration-required"))
            return
        log.info("Password changed in-band for {user}", user=user.full())
        event.reply()

    async def remove(event: StanzaEvent) -> None:
        try:
            await remove_account(ctx, event.frm, reason="in-band", before_close=event.reply)
        except NoSuchAccount:
            _error(event, StanzaError("registration-required"))

    def too_short(password: str) -> str | None:
        """Why *password* is refused by the site's minimum length, or None."""
        try:
            check_password_length(password, ctx.config.auth.min_password_length)
        except InvalidPassword as e:
            return str(e).capitalize()
        return None

    for kind in ("host", "bare"):
        hooks.add(f"iq-get/{kind}/{REGISTER}", account_get)
        hooks.add(f"iq-set/{kind}/{REGISTER}", account_set)

    if not settings.enabled:
        return

    # -- new accounts, before authentication -------------------------------------------------

    limit = RateLimit(ctx.clock, settings.max_per_ip, settings.period)

    def stream_features(features: domish.Element) -> None:
        features.addElement((STREAM_FEATURE, "register"))

    def pre_auth_iq(request: Any) -> bool:
        iq = request.element
        query = child(iq, REGISTER, "query")
        stype = iq.getAttribute("type")
        if query is None or stype not in ("get", "set"):
            return False
        if not iq.getAttribute("id"):
            request.send(_error_iq(iq, StanzaError("bad-request", "An iq needs an 'id'")))
        elif stype == "get":
            fields = domish.Element((REGISTER, "query"))
            fields.addElement("instructions", content=INSTRUCTIONS)
            fields.addElement("username")
            fields.addElement("password")
            request.send(_result_iq(iq, fields))
        else:
            _run(create(request, query), "in-band registration",
                 lambda: request.send(_error_iq(iq, StanzaError("internal-server-error"))))
        return True

    async def create(request: Any, query: domish.Element) -> None:
        iq = request.element
        if child(query, REGISTER, "remove") is not None:
            request.send(_error_iq(iq, StanzaError("unexpected-request", "Authenticate first")))
            return
        username = text_of(child(query, REGISTER, "username")).strip()
        password = text_of(child(query, REGISTER, "password"))
        if not username or not password:
            request.send(_error_iq(iq, StanzaError("not-acceptable", "Both a username and a password are needed")))
            return
        try:
            user = prep_local(username)
        except InvalidJID as e:
            request.send(_error_iq(iq, StanzaError("not-acceptable", f"Not a valid username: {e}")))
            return
        refused = too_short(password)
        if refused:
            request.send(_error_iq(iq, StanzaError("not-acceptable", refused)))
            return
        if not limit.take(request.peer):
            log.info("In-band registration refused for {peer}: too many accounts from this address",
                     peer=request.peer)
            request.send(_error_iq(iq, StanzaError(
                "policy-violation", "Too many accounts were created from your address; try again later")))
            return
        try:
            await ctx.storage.accounts.create(user, request.domain, password)
        except AccountExists:
            limit.give_back(request.peer)
            request.send(_error_iq(iq, StanzaError("conflict", "That username is taken")))
            return
        except InvalidPassword as e:
            limit.give_back(request.peer)
            request.send(_error_iq(iq, StanzaError("not-acceptable", str(e))))
            return
        except BaseException:
            limit.give_back(request.peer)
            raise
        log.info("Registered {jid} in-band from {peer}", jid=JID(user, request.domain).full(), peer=request.peer)
        request.send(_result_iq(iq, None))

    hooks.add("c2s/pre-auth-features", stream_features)
    hooks.add("c2s/pre-auth-iq", pre_auth_iq)


def _run(work: Coroutine[Any, Any, None], what: str, answer_failure: Callable[[], None]) -> None:
    """Run *work*; if it fails, log it and answer with *answer_failure* (an error
    that, unlike :func:`fedxmpp.features._shared.spawn`'s, repeats no password)."""
    def failed(failure: Any) -> None:
        log.failure("{what} failed", failure, what=what)
        answer_failure()

    defer.Deferred.fromCoroutine(work).addErrback(failed)


def _result_iq(request: domish.Element, payload: domish.Element | None) -> domish.Element:
    iq = domish.Element((ns.CLIENT, "iq"))
    iq["type"] = "result"
    iq["id"] = request.getAttribute("id", "")
    if payload is not None:
        iq.addChild(payload)
    return iq


def _error_iq(request: domish.Element, error: StanzaError) -> domish.Element:
    """An error reply that does not repeat the request (which may hold a password)."""
    iq = domish.Element((ns.CLIENT, "iq"))
    iq["type"] = "error"
    iq["id"] = request.getAttribute("id", "")
    iq.addChild(error.to_element())
    return iq


def _error(event: StanzaEvent, error: StanzaError) -> None:
    iq = _error_iq(event.stanza, error)
    iq["from"] = event.to.full()
    iq["to"] = event.frm.full()
    event.router.route(iq, event.to, event.frm)
