"""The example SMS gateway's logic, with a fake SMS API and a fake stream parent."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.web.test.requesthelper import DummyRequest
from twisted.words.xish import domish

from examples.sms_gateway.gateway import InboundWebhook, Settings, SmsError, SmsGateway

DOMAIN = "sms.example.test"
SETTINGS = Settings(domain=DOMAIN, api="http://provider.invalid", users={"alice@example.test": "+15550001111"})


class FakeApi:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, sender: str, to: str, text: str) -> None:
        if self.fail:
            raise self.fail
        self.sent.append((sender, to, text))


class FakeParent:
    """What an XMPPHandler needs of its ExternalComponent."""

    def __init__(self, connected: bool = True) -> None:
        self.connected = connected
        self.sent: list[domish.Element] = []
        self.handlers: list[Any] = []

    def addHandler(self, handler: Any) -> None:
        self.handlers.append(handler)

    def send(self, element: domish.Element) -> None:
        self.sent.append(element)


def _gateway(api: FakeApi | None = None, connected: bool = True) -> tuple[SmsGateway, FakeApi, FakeParent]:
    api = api or FakeApi()
    gateway = SmsGateway(SETTINGS, api)
    parent = FakeParent(connected)
    gateway.setHandlerParent(parent)
    return gateway, api, parent


def _message(to: str, body: str | None = "hello", frm: str = "alice@example.test/phone", type: str = "chat"):
    m = domish.Element((None, "message"))
    m["from"], m["to"], m["type"] = frm, to, type
    if body is not None:
        m.addElement("body", content=body)
    return m


def _condition(el: domish.Element) -> str:
    error = next(c for c in el.elements() if c.name == "error")
    return next(c.name for c in error.elements() if c.name != "text")


def test_message_to_a_number_is_sent_from_the_users_number():
    """A chat message to +number@domain becomes one API call from the sender's own
    SMS number (the resource does not matter), and nothing comes back."""
    gateway, api, parent = _gateway()
    gateway.on_message(_message("+15551234567@sms.example.test", "meet at 6"))
    assert api.sent == [("+15550001111", "+15551234567", "meet at 6")]
    assert parent.sent == [] and gateway.sent == 1


def test_messages_without_body_or_of_other_types_are_ignored():
    """Chat states (no body), errors and groupchat messages send no SMS and get no answer."""
    gateway, api, parent = _gateway()
    gateway.on_message(_message("+15551234567@sms.example.test", None))
    gateway.on_message(_message("+15551234567@sms.example.test", type="error"))
    gateway.on_message(_message("+15551234567@sms.example.test", type="groupchat"))
    assert api.sent == [] and parent.sent == []


def test_refusals_are_stanza_errors_to_the_user():
    """Not a number -> item-not-found; a user without an SMS number ->
    registration-required; a text too long -> not-acceptable; the provider's
    failure -> its condition.  Each error goes back to the sender."""
    cases = [
        (_message("bob@sms.example.test"), None, "item-not-found"),
        (_message("+123@sms.example.test"), None, "item-not-found"),
        (_message("+15551234567@sms.example.test", frm="mallory@example.test/x"), None, "registration-required"),
        (_message("+15551234567@sms.example.test", "x" * 2000), None, "not-acceptable"),
        (_message("+15551234567@sms.example.test"), SmsError("service-unavailable", "HTTP 503"),
         "service-unavailable"),
        (_message("+15551234567@sms.example.test"), SmsError("remote-server-timeout", "down"),
         "remote-server-timeout"),
    ]
    for message, fail, condition in cases:
        gateway, api, parent = _gateway(FakeApi(fail))
        gateway.on_message(message)
        [error] = parent.sent
        assert (error["type"], error["to"], _condition(error)) == ("error", message["from"], condition)
        assert api.sent == []


def test_inbound_sms_becomes_a_chat_message_to_the_user():
    """An inbound SMS to alice's number is delivered to alice as a chat message from
    +sender@domain."""
    gateway, api, parent = _gateway()
    assert gateway.deliver("+15551234567", "+15550001111", "on my way") == "ok"
    [message] = parent.sent
    assert (message["from"], message["to"], message["type"]) == ("+15551234567@sms.example.test",
                                                                 "alice@example.test", "chat")
    assert str(next(message.elements())) == "on my way"


def test_inbound_outcomes():
    """Unknown recipient number, invalid sender and a detached gateway are reported (for
    the webhook to answer 404/400/503), and nothing is sent."""
    gateway, _, parent = _gateway()
    assert gateway.deliver("+15551234567", "+19999999999", "x") == "unknown"
    assert gateway.deliver("not-a-number", "+15550001111", "x") == "invalid"
    assert parent.sent == []
    offline, _, parent = _gateway(connected=False)
    assert offline.deliver("+15551234567", "+15550001111", "x") == "offline" and parent.sent == []


def _post(resource: InboundWebhook, body: bytes, token: str | None = None) -> tuple[int, bytes]:
    request = DummyRequest([b"inbound"])
    request.method = b"POST"
    request.content = BytesIO(body)
    if token:
        request.requestHeaders.addRawHeader(b"authorization", f"Bearer {token}".encode())
    out = resource.render_POST(request)
    return request.responseCode or 200, out


def test_webhook_status_codes():
    """The webhook answers 202 when delivered, 404 for an unknown number, 400 for bad
    JSON, 503 while detached (so the provider retries), 401 without the token."""
    gateway, _, parent = _gateway()
    hook = InboundWebhook(gateway, token="t0ken")
    good = json.dumps({"from": "+15551234567", "to": "+15550001111", "text": "hi"}).encode()
    assert _post(hook, good, "t0ken")[0] == 202 and len(parent.sent) == 1
    assert _post(hook, good)[0] == 401
    assert _post(hook, json.dumps({"from": "+15551234567", "to": "+1999", "text": "x"}).encode(), "t0ken")[0] == 404
    assert _post(hook, b"{not json", "t0ken")[0] == 400
    offline, _, _ = _gateway(connected=False)
    assert _post(InboundWebhook(offline), good)[0] == 503


def test_subscriptions_are_approved_and_probes_answered():
    """A user adding a number to the roster gets 'subscribed'; a probe gets presence."""
    gateway, _, parent = _gateway()
    sub = domish.Element((None, "presence"))
    sub["from"], sub["to"], sub["type"] = "alice@example.test/phone", "+15551234567@sms.example.test", "subscribe"
    gateway.on_presence(sub)
    probe = domish.Element((None, "presence"))
    probe["from"], probe["to"], probe["type"] = "example.test", "+15551234567@sms.example.test", "probe"
    gateway.on_presence(probe)
    assert [(p.getAttribute("type"), p["to"], p["from"]) for p in parent.sent] == [
        ("subscribed", "alice@example.test", "+15551234567@sms.example.test"),
        (None, "example.test", "+15551234567@sms.example.test")]


def test_unhandled_iq_gets_service_unavailable():
    """An iq request no handler took is answered, never left unanswered."""
    gateway, _, parent = _gateway()
    iq = domish.Element((None, "iq"))
    iq["from"], iq["to"], iq["type"], iq["id"] = "alice@example.test/a", DOMAIN, "get", "q"
    iq.addElement(("urn:unknown", "query"))
    gateway.on_unhandled_iq(iq)
    [error] = parent.sent
    assert _condition(error) == "service-unavailable" and error["id"] == "q"
