"""An SMS gateway: a XEP-0114 component bridging XMPP users and an HTTP SMS API.

* A user of the XMPP server writes to ``+15551234567@sms.example.test``; the gateway
  POSTs ``{"from": <the user's SMS number>, "to": "+15551234567", "text": ...}`` as
  JSON to ``<api>/messages``.  When the provider refuses or cannot be reached the
  user gets an error message back: nothing is dropped silently.
* The provider POSTs an inbound SMS, ``{"from": "+15551234567", "to": <a user's
  number>, "text": ...}``, to the gateway's webhook ``/inbound``; the gateway
  delivers it as a chat message from ``+15551234567@sms.example.test``.  While the
  gateway is not connected to the XMPP server the webhook answers 503, so that the
  provider retries later instead of losing the message.
* Subscriptions to a number are approved, so numbers can live in rosters; the
  gateway answers disco#info (identity gateway/sms) and pings.

It is a separate process that attaches to the server as a component::

    python -m examples.sms_gateway.gateway --domain sms.example.test \\
        --secret-file sms.secret --server 127.0.0.1:5347 \\
        --api http://127.0.0.1:8025 --webhook tcp:8026:interface=127.0.0.1 \\
        --user alice@example.test=+15550001111

wokkel (Twisted's XMPP protocol library) is used only through ``fedxmpp.compat``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Sequence

from twisted.internet import defer, error as net_error
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.words.xish import domish
from zope.interface import implementer

from fedxmpp.compat import (
    JID, DiscoFeature, DiscoHandler, DiscoIdentity, ExternalComponent, IDisco, PingHandler, StanzaError,
    XMPPHandler,
)

log = Logger()

#: E.164: a plus, then up to 15 digits, the first not 0.
NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
#: Longest text sent in one request (providers split it into SMS parts).
MAX_TEXT = 1600
#: Largest webhook body read.
MAX_WEBHOOK_BODY = 16384


@dataclass(frozen=True)
class Settings:
    domain: str
    api: str
    api_token: str = field(default="", repr=False)
    # A user's bare JID -> the SMS number the provider gave them.
    users: dict[str, str] = field(default_factory=dict)

    def user_for(self, number: str) -> str | None:
        for jid, own in self.users.items():
            if own == number:
                return jid
        return None


class SmsError(Exception):
    """The SMS could not be sent; *condition* is the stanza error for the user."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


class HttpSmsApi:
    """The provider's HTTP API, through twisted.web's Agent (reactor injected)."""

    def __init__(self, reactor: Any, base_url: str, token: str = "", timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.url = base_url.rstrip("/") + "/messages"
        self.token = token
        self.timeout = timeout
        self.agent = Agent(reactor, connectTimeout=timeout)

    async def send(self, sender: str, to: str, text: str) -> None:
        headers = Headers({b"content-type": [b"application/json"]})
        if self.token:
            headers.addRawHeader(b"authorization", f"Bearer {self.token}".encode())
        body = FileBodyProducer(BytesIO(json.dumps({"from": sender, "to": to, "text": text}).encode()))
        try:
            d = self.agent.request(b"POST", self.url.encode(), headers, body)
            d.addTimeout(self.timeout, self.reactor)
            response = await d
            await _discard_body(response)
        except (defer.TimeoutError, defer.CancelledError, net_error.ConnectError) as e:
            raise SmsError("remote-server-timeout", f"The SMS provider cannot be reached ({type(e).__name__})")
        if response.code >= 500:
            raise SmsError("service-unavailable", f"The SMS provider failed (HTTP {response.code}); try again later")
        if response.code >= 300:
            raise SmsError("not-acceptable", f"The SMS provider refused the message (HTTP {response.code})")


class _Discard(Protocol):
    def __init__(self, done: defer.Deferred[None]) -> None:
        self.done = done

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(None)


def _discard_body(response: Any) -> defer.Deferred[None]:
    """Read the response body to its end without keeping it (the status is the answer)."""
    done: defer.Deferred[None] = defer.Deferred()
    response.deliverBody(_Discard(done))
    return done


@implementer(IDisco)
class SmsGateway(XMPPHandler):
    """The XMPP side: messages to numbers become API calls, inbound SMS become messages."""

    def __init__(self, settings: Settings, api: Any) -> None:
        super().__init__()
        self.settings = settings
        self.api = api
        self.sent = 0
        self.delivered = 0

    # -- stream -----------------------------------------------------------------------------

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/message", self.on_message)
        self.xmlstream.addObserver("/presence", self.on_presence)
        # Lowest priority: an iq request no handler took gets an error, never silence.
        for kind in ("get", "set"):
            self.xmlstream.addObserver(f"/iq[@type='{kind}']", self.on_unhandled_iq, priority=-100)
        log.info("SMS gateway {domain} attached to the XMPP server", domain=self.settings.domain)

    def connectionLost(self, reason: Any) -> None:
        log.info("SMS gateway {domain} lost its XMPP connection; reconnecting", domain=self.settings.domain)

    @property
    def connected(self) -> bool:
        return self.parent is not None and self.parent.connected

    # -- XMPP -> SMS --------------------------------------------------------------------------

    def on_message(self, message: domish.Element) -> None:
        if message.getAttribute("type", "normal") in ("error", "groupchat", "headline"):
            return
        body = next((c for c in message.elements() if c.name == "body"), None)
        if body is None:
            return  # chat states, receipts...: nothing to text
        try:
            sender = JID(message["from"]).userhost()
            number = JID(message["to"]).user
        except Exception:
            return
        if not number or not NUMBER.fullmatch(number):
            self._refuse(message, "item-not-found", "Write to +<international number>@" + self.settings.domain)
            return
        own = self.settings.users.get(sender)
        if own is None:
            self._refuse(message, "registration-required", "You have no SMS number on this gateway")
            return
        text = str(body)
        if len(text) > MAX_TEXT:
            self._refuse(message, "not-acceptable", f"At most {MAX_TEXT} characters")
            return
        d = defer.Deferred.fromCoroutine(self.api.send(own, number, text))
        d.addCallbacks(self._sent, self._send_failed, errbackArgs=(message,))

    def _sent(self, _: Any) -> None:
        self.sent += 1

    def _send_failed(self, failure: Any, message: domish.Element) -> None:
        if failure.check(SmsError):
            self._refuse(message, failure.value.condition, failure.value.text)
        else:
            log.failure("Sending an SMS failed", failure)
            self._refuse(message, "internal-server-error", "The SMS could not be sent")

    def _refuse(self, stanza: domish.Element, condition: str, text: str) -> None:
        log.info("Refused {kind} from {frm}: {condition}", kind=stanza.name, frm=stanza.getAttribute("from"),
                 condition=condition)
        if self.connected:
            self.send(StanzaError(condition, text=text).toResponse(stanza))

    # -- SMS -> XMPP --------------------------------------------------------------------------

    def deliver(self, sender: str, to_number: str, text: str) -> str:
        """Deliver an inbound SMS; "ok", "unknown" (no user has *to_number*),
        "invalid" or "offline" (not attached: the provider should retry)."""
        if not NUMBER.fullmatch(sender) or not isinstance(text, str):
            return "invalid"
        user = self.settings.user_for(to_number)
        if user is None:
            return "unknown"
        if not self.connected:
            return "offline"
        message = domish.Element((None, "message"))
        message["from"] = f"{sender}@{self.settings.domain}"
        message["to"] = user
        message["type"] = "chat"
        message.addElement("body", content=text)
        self.send(message)
        self.delivered += 1
        return "ok"

    # -- presence and disco -------------------------------------------------------------------

    def on_presence(self, presence: domish.Element) -> None:
        kind = presence.getAttribute("type")
        if kind not in ("subscribe", "probe"):
            return
        reply = domish.Element((None, "presence"))
        reply["from"] = presence.getAttribute("to", self.settings.domain)
        reply["to"] = JID(presence["from"]).userhost() if kind == "subscribe" else presence["from"]
        if kind == "subscribe":
            reply["type"] = "subscribed"
        self.send(reply)

    def on_unhandled_iq(self, iq: domish.Element) -> None:
        if not getattr(iq, "handled", False):
            iq.handled = True
            self.send(StanzaError("service-unavailable").toResponse(iq))

    def getDiscoInfo(self, requestor: Any, target: Any, nodeIdentifier: str = "") -> list[Any]:
        if nodeIdentifier or target.user:
            return []
        return [DiscoIdentity("gateway", "sms", "SMS gateway"), DiscoFeature("http://jabber.org/protocol/disco#info")]

    def getDiscoItems(self, requestor: Any, target: Any, nodeIdentifier: str = "") -> list[Any]:
        return []


class InboundWebhook(Resource):
    """``POST /inbound`` from the provider: JSON {"from", "to", "text"}."""

    isLeaf = True

    def __init__(self, gateway: SmsGateway, token: str = "") -> None:
        super().__init__()
        self.gateway = gateway
        self.token = token

    def render_POST(self, request: Any) -> bytes:
        if self.token and request.getHeader("authorization") != f"Bearer {self.token}":
            request.setResponseCode(401)
            return b"unauthorized\n"
        raw = request.content.read(MAX_WEBHOOK_BODY + 1)
        try:
            if len(raw) > MAX_WEBHOOK_BODY:
                raise ValueError("too large")
            data = json.loads(raw)
            sender, to, text = data["from"], data["to"], data["text"]
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            return b"expected JSON {from, to, text}\n"
        outcome = self.gateway.deliver(sender, to, text)
        request.setResponseCode({"ok": 202, "unknown": 404, "invalid": 400, "offline": 503}[outcome])
        return (outcome + "\n").encode()


def build(reactor: Any, settings: Settings, *, host: str, port: int, secret: str, api: Any = None,
          ) -> tuple[ExternalComponent, SmsGateway]:
    """The component service with the gateway, disco and ping handlers (not started)."""
    component = ExternalComponent(reactor, host, port, settings.domain, secret)
    gateway = SmsGateway(settings, api or HttpSmsApi(reactor, settings.api, settings.api_token))
    gateway.setHandlerParent(component)
    DiscoHandler().setHandlerParent(component)
    PingHandler().setHandlerParent(component)
    return component, gateway


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sms_gateway", description="An SMS gateway component for an XMPP server.")
    p.add_argument("--domain", required=True, help="the component domain, e.g. sms.example.test")
    p.add_argument("--secret-file", required=True, help="file holding the component secret")
    p.add_argument("--server", default="127.0.0.1:5347", help="the server's component port, HOST:PORT")
    p.add_argument("--api", required=True, help="base URL of the SMS provider's API")
    p.add_argument("--api-token-file", help="file holding the provider's bearer token (also required on the webhook)")
    p.add_argument("--webhook", default="tcp:8026:interface=127.0.0.1", help="Twisted endpoint for /inbound")
    p.add_argument("--user", action="append", default=[], metavar="JID=NUMBER",
                   help="a user's bare JID and their SMS number (repeatable)")
    return p.parse_args(argv)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


async def run(reactor: Any, argv: Sequence[str]) -> None:
    args = parse_args(argv)
    users = {}
    for entry in args.user:
        jid, _, number = entry.partition("=")
        if not NUMBER.fullmatch(number):
            raise SystemExit(f"sms_gateway: --user {entry!r}: expected JID=+NUMBER")
        users[jid] = number
    token = _read(args.api_token_file) if args.api_token_file else ""
    settings = Settings(domain=args.domain, api=args.api, api_token=token, users=users)
    host, _, port = args.server.rpartition(":")
    component, gateway = build(reactor, settings, host=host, port=int(port), secret=_read(args.secret_file))
    listening = await serverFromString(reactor, args.webhook).listen(Site(InboundWebhook(gateway, token)))
    log.info("SMS webhook listening on {address}", address=listening.getHost())
    component.startService()
    done: defer.Deferred[None] = defer.Deferred()
    reactor.addSystemEventTrigger("before", "shutdown", component.stopService)
    await done  # until the reactor stops (SIGTERM, SIGINT)


def main(argv: Sequence[str] | None = None) -> None:
    from twisted.internet import task

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, argv)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
