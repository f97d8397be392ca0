"""Client stream negotiation (RFC 6120 §5-§7): STARTTLS, then SASL, then bind.

Each stage offers its features and accepts only its own elements; a stanza
before authentication is a ``<not-authorized/>`` stream error.  Once a resource
is bound the stream belongs to a :class:`~fedxmpp.c2s.session.ClientSession`
— or, instead of binding, the stream resumes an existing session
(XEP-0198, :mod:`fedxmpp.c2s.sm`) and belongs to that one.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish import domish

from fedxmpp.c2s import sasl, sm
from fedxmpp.c2s.session import ClientSession
from fedxmpp.stream.xmlstream import ServerStream
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.jid import JID, InvalidJID, prep_domain, prep_resource

if TYPE_CHECKING:
    from fedxmpp.c2s.context import C2SContext

log = Logger()

# Base64 of the largest SASL message we read; SCRAM messages are far smaller.
MAX_SASL_DATA = 16384


@dataclass(frozen=True)
class PreAuthRequest:
    """An iq from a client that has not authenticated yet (after TLS), offered to
    the "c2s/pre-auth-iq" hook.  The handler that returns True answers it with
    *send* (the reply needs no addresses)."""

    element: domish.Element
    domain: str
    peer: str
    send: Callable[[domish.Element], None]


class Stage(enum.Enum):
    TLS = "tls"
    SASL = "sasl"
    BIND = "bind"
    BOUND = "bound"


class ClientStreamHandler:
    """The c2s meaning of a :class:`ServerStream`, from header to bound session."""

    def __init__(self, ctx: C2SContext) -> None:
        self.ctx = ctx
        self.stage = Stage.TLS
        self.user: str | None = None
        self.auth_domain: str | None = None
        self.session: ClientSession | None = None
        self._mechanism: sasl.Mechanism | None = None
        self._offered: list[str] = []
        self._bindings: dict[str, bytes] = {}
        self._sasl_busy = False
        self._failures = 0
        self._connected_at = ctx.clock.seconds()
        # The full JID of the session this stream carried, once it ended (for the log).
        self._ended_as: str | None = None

    # -- StreamHandler ----------------------------------------------------------------

    def stream_opened(self, stream: ServerStream, root: domish.Element) -> str:
        if self.stage is Stage.TLS:
            if stream.link.secure:
                self.stage = Stage.SASL
            elif not stream.link.starttls_offered:
                raise StreamError("policy-violation", "This server requires encryption: connect with TLS "
                                                      "(wss:// or https://)")
        to = root.getAttribute("to")
        if not to:
            raise StreamError("host-unknown", "The stream header names no domain ('to')")
        try:
            domain = prep_domain(to)
        except InvalidJID:
            raise StreamError("host-unknown", "Not a domain") from None
        if domain not in self.ctx.domains:
            raise StreamError("host-unknown", "This server does not host that domain")
        if self.stage is Stage.BIND and domain != self.auth_domain:
            raise StreamError("host-unknown", "Not the domain you authenticated with")
        return domain

    def features(self, stream: ServerStream) -> domish.Element:
        features = domish.Element((ns.STREAMS, "features"))
        if self.stage is Stage.TLS:
            tls = features.addElement((ns.TLS, "starttls"))
            tls.addElement("required")
        elif self.stage is Stage.SASL:
            self._bindings = stream.link.channel_bindings()
            self._offered = sasl.offered_mechanisms(tls=True, channel_bindings=self._bindings,
                                                    allow_plain=self.ctx.config.auth.allow_plain)
            mechs = features.addElement((ns.SASL, "mechanisms"))
            for name in self._offered:
                mechs.addElement("mechanism", content=name)
            if self._bindings:
                cb = features.addElement((ns.SASL_CB, "sasl-channel-binding"))
                for kind in self._bindings:
                    cb.addElement("channel-binding")["type"] = kind
            # Features offered before authentication (XEP-0077 in-band registration).
            self.ctx.hooks.fire("c2s/pre-auth-features", features)
        elif self.stage is Stage.BIND:
            features.addElement((ns.BIND, "bind"))
            features.addElement((ns.SESSION, "session")).addElement("optional")
            self.ctx.hooks.fire("c2s/features", features)
        return features

    def element_received(self, stream: ServerStream, element: domish.Element) -> None:
        if self.stage is Stage.BOUND:
            assert self.session is not None
            self.session.element_received(element)
        elif self.stage is Stage.TLS:
            self._tls_stage(stream, element)
        elif self.stage is Stage.SASL:
            self._sasl_stage(stream, element)
        else:
            self._bind_stage(stream, element)

    def stream_closing(self, stream: ServerStream) -> None:
        """From the closing tag (either side's), a stream error or an abort on,
        the session is no longer a destination (RFC 6121 §8 rules apply to what
        comes for it): it ends now — or hibernates, under stream management —
        not when the peer finally drops the connection."""
        session = self.session
        if session is None or session.stream is not stream:
            return
        self._ended_as = session.address.full()
        self.session = None
        if session.replaced:
            # SessionManager.bind closes it midway: the new session takes the
            # address before this one's end is announced.
            self.ctx.clock.callLater(0, session.ended)
        else:
            session.ended()

    def stream_closed(self, stream: ServerStream, reason: Failure) -> None:
        self._log_end(stream)
        if self.session is not None:
            self.session.ended()
            self.session = None

    def _log_end(self, stream: ServerStream) -> None:
        """One line per connection end: who, from where, why, after how long."""
        if self.session is not None:
            who = self.session.address.full()
        elif self._ended_as is not None:
            who = self._ended_as
        elif self.user is not None:
            who = f"{self.user}@{self.auth_domain}"
        else:
            who = "an unauthenticated client"
        why = _END_REASONS.get(stream.close_reason) or f"stream error <{stream.close_reason}/>"
        log.info("Connection of {who} from {peer} ended ({why}) after {duration:.1f} s", who=who,
                 peer=_peer_host(stream), why=why, duration=self.ctx.clock.seconds() - self._connected_at)

    # -- STARTTLS (RFC 6120 §5) ---------------------------------------------------------

    def _tls_stage(self, stream: ServerStream, element: domish.Element) -> None:
        if element.uri == ns.TLS and element.name == "starttls":
            stream.write(f"<proceed xmlns='{ns.TLS}'/>")
            stream.link.start_tls(self.ctx.certificates.server_creator())
            stream.restart()
        elif element.uri == ns.SASL and element.name == "auth":
            self._sasl_failure(stream, "encryption-required", "Negotiate TLS first")
        else:
            stream.fail(StreamError("policy-violation" if element.uri != ns.CLIENT else "not-authorized",
                                    "TLS is required before anything else"))

    # -- SASL (RFC 6120 §6) ---------------------------------------------------------------

    def _sasl_stage(self, stream: ServerStream, element: domish.Element) -> None:
        domain = stream.domain
        assert domain is not None  # stream_opened accepted the header's 'to'
        if element.uri != ns.SASL:
            if element.uri == ns.CLIENT:
                # An iq a feature serves before authentication (XEP-0077 in-band
                # registration); anything else is not allowed yet.
                if element.name == "iq" and self.ctx.hooks.fire(
                        "c2s/pre-auth-iq", PreAuthRequest(element, domain, _peer_host(stream), stream.send)):
                    return
                stream.fail(StreamError("not-authorized", "Authenticate first"))
            else:
                stream.fail(StreamError("policy-violation", "Unexpected element during authentication"))
            return
        if self._sasl_busy:
            stream.fail(StreamError("policy-violation", "Wait for the server's answer"))
            return
        if element.name == "auth":
            throttle = self.ctx.auth_throttle
            if throttle is not None and throttle.blocked(_peer_host(stream)):
                self._sasl_failure(stream, "temporary-auth-failure",
                                   "Too many failed authentications from your address; try again later")
                return
            name = element.getAttribute("mechanism", "")
            try:
                self._mechanism = sasl.create_mechanism(
                    name, domain=domain, accounts=self.ctx.accounts,
                    channel_bindings=self._bindings, offered=self._offered)
            except KeyError:
                self._sasl_failure(stream, "invalid-mechanism", None)
                return
            # The mechanism's name only: its messages may carry a password (PLAIN).
            log.debug("SASL {mechanism} started for {domain} from {peer}", mechanism=name, domain=stream.domain,
                      peer=_peer_host(stream))
            self._sasl_step(stream, element)
        elif element.name == "response":
            if self._mechanism is None:
                self._sasl_failure(stream, "malformed-request", "No authentication in progress")
                return
            self._sasl_step(stream, element)
        elif element.name == "abort":
            self._mechanism = None
            self._sasl_failure(stream, "aborted", None)
        else:
            stream.fail(StreamError("unsupported-stanza-type", f"Unknown SASL element <{element.name}/>"))

    def _sasl_step(self, stream: ServerStream, element: domish.Element) -> None:
        text = str(element).strip()
        data: bytes | None
        if element.name == "auth" and not text:
            data = None
        elif text == "=":
            data = b""
        else:
            if len(text) > MAX_SASL_DATA:
                self._mechanism = None
                self._sasl_failure(stream, "malformed-request", "Too much data")
                return
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                self._mechanism = None
                self._sasl_failure(stream, "incorrect-encoding", None)
                return
        mechanism = self._mechanism
        assert mechanism is not None
        self._sasl_busy = True
        d = defer.Deferred.fromCoroutine(mechanism.step(data))
        d.addCallback(self._sasl_result, stream, mechanism)
        d.addErrback(self._sasl_error, stream)

    def _sasl_result(self, result: object, stream: ServerStream, mechanism: sasl.Mechanism) -> None:
        self._sasl_busy = False
        if stream.closed or mechanism is not self._mechanism:
            return
        if isinstance(result, sasl.Challenge):
            stream.write(f"<challenge xmlns='{ns.SASL}'>{_b64(result.data)}</challenge>")
        elif isinstance(result, sasl.Success):
            self._mechanism = None
            throttle = self.ctx.auth_throttle
            account = f"{result.user}@{stream.domain}"
            if throttle is not None:
                if throttle.account_blocked(account, _peer_host(stream)):
                    self._count_login(mechanism, "failed")
                    self._sasl_failure(stream, "temporary-auth-failure",
                                       "Too many failed authentications for this account; try again later")
                    return
                throttle.succeeded(account, _peer_host(stream))
            self.user = result.user
            self.auth_domain = stream.domain
            self.stage = Stage.BIND
            extra = _b64(result.data) if result.data is not None else ""
            stream.write(f"<success xmlns='{ns.SASL}'>{extra}</success>")
            log.info("Authenticated {user}@{domain} with {mechanism}", user=result.user, domain=stream.domain,
                     mechanism=mechanism.name)
            self._count_login(mechanism, "ok")
            stream.restart()
        elif isinstance(result, sasl.Failure):
            self._mechanism = None
            self._count_login(mechanism, "failed")
            throttle = self.ctx.auth_throttle
            delay = 0.0
            if result.condition == "not-authorized" and throttle is not None:
                tried = f"{result.user}@{stream.domain}" if result.user else None
                delay = throttle.failed(_peer_host(stream), self.ctx.config.auth, tried)
            if delay > 0:
                # Nothing else is accepted until the answer is sent (_sasl_busy).
                self._sasl_busy = True
                self.ctx.clock.callLater(delay, self._delayed_failure, stream, result.condition, result.text)
            else:
                self._sasl_failure(stream, result.condition, result.text)

    def _count_login(self, mechanism: sasl.Mechanism, outcome: str) -> None:
        key = (mechanism.name, outcome)
        self.ctx.logins[key] = self.ctx.logins.get(key, 0) + 1

    def _delayed_failure(self, stream: ServerStream, condition: str, text: str | None) -> None:
        self._sasl_busy = False
        if not stream.closed:
            self._sasl_failure(stream, condition, text)

    def _sasl_error(self, failure: Failure, stream: ServerStream) -> None:
        self._sasl_busy = False
        self._mechanism = None
        log.failure("SASL step failed", failure)
        self._sasl_failure(stream, "temporary-auth-failure", None)

    def _sasl_failure(self, stream: ServerStream, condition: str, text: str | None) -> None:
        failure = domish.Element((ns.SASL, "failure"))
        failure.addElement(condition)
        if text:
            failure.addElement("text", content=text)
        stream.send(failure)
        if condition in ("aborted", "encryption-required", "invalid-mechanism"):
            return
        self._failures += 1
        # One line per failure with the peer's address, for operators and fail2ban.
        log.info("Authentication failure ({condition}) for {domain} from {peer}", condition=condition,
                 domain=stream.domain, peer=_peer_host(stream))
        if self._failures >= self.ctx.config.auth.max_attempts:
            stream.fail(StreamError("policy-violation", "Too many failed authentication attempts"))

    # -- resource binding (RFC 6120 §7) and legacy session ---------------------------------

    def _bind_stage(self, stream: ServerStream, element: domish.Element) -> None:
        if element.uri == sm.NS and self.ctx.sm is not None:
            # XEP-0198 resumption takes the place of binding.
            assert self.user is not None and self.auth_domain is not None
            resumed = self.ctx.sm.before_bind(stream, element, JID(self.user, self.auth_domain))
            if resumed is not None:
                self.session = resumed
                self.stage = Stage.BOUND
                stream.negotiated()
            return
        if element.uri != ns.CLIENT or element.name != "iq":
            stream.fail(StreamError("not-authorized", "Bind a resource first"))
            return
        bind = _child(element, ns.BIND, "bind")
        if element.getAttribute("type") != "set" or bind is None:
            reply = error_reply(element, StanzaError("not-authorized", "Bind a resource first"))
            stream.send(reply)
            return
        resource: str | None = None
        res = _child(bind, None, "resource")
        if res is not None and str(res).strip():
            try:
                resource = prep_resource(str(res).strip())
            except InvalidJID:
                stream.send(error_reply(element, StanzaError("bad-request", "Not a valid resource")))
                return
        assert self.user is not None and self.auth_domain is not None
        bare = JID(self.user, self.auth_domain)
        self.session = ClientSession(stream, self.ctx, bare)
        jid = self.ctx.sessions.bind(self.session, resource)
        self.stage = Stage.BOUND
        stream.negotiated()
        result = domish.Element((ns.CLIENT, "iq"))
        result["type"] = "result"
        if element.getAttribute("id") is not None:
            result["id"] = element["id"]
        result.addElement((ns.BIND, "bind")).addElement("jid", content=jid.full())
        stream.send(result)
        log.info("Bound {jid}", jid=jid.full())
        self.ctx.hooks.fire("c2s/session-bound", self.session)


# ServerStream.close_reason, for the log; any other value is a stream error's condition.
_END_REASONS = {None: "connection lost", "peer": "closed by the client", "local": "closed by the server"}


def _child(element: domish.Element, uri: str | None, name: str) -> domish.Element | None:
    for child in element.elements():
        if child.name == name and (uri is None or child.uri == uri):
            return child
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def _peer_host(stream: ServerStream) -> str:
    return stream.link.peer_host
