"""The sender-side pre- events that client stanzas pass before the router."""

from __future__ import annotations

from fedxmpp.hooks import Hooks
from fedxmpp.im.outbound import ClientOutbound
from fedxmpp.router import Router
from fedxmpp.xml.jid import JID
from tests.unit.fakes import stanza


def make() -> tuple[Hooks, ClientOutbound, list]:
    hooks = Hooks()
    router = Router(["example.test"])
    routed: list = []
    router.set_local(lambda st, frm, to: routed.append((st.name, to.full())))
    router.set_default(lambda st, frm, to: routed.append((st.name, to.full())))
    return hooks, ClientOutbound(hooks, router), routed


def test_without_handlers_the_stanza_is_routed_once():
    """Nothing hooked: the stanza reaches the router unchanged, exactly once."""
    _, out, routed = make()
    el = stanza("message", "a@example.test/r", "b@remote.test", "chat")
    out.route(el, JID.parse("a@example.test/r"), JID.parse("b@remote.test"))
    assert routed == [("message", "b@remote.test")]


def test_event_names_follow_the_destination_and_a_handler_can_take_over():
    """pre-<stanza>/<host|bare|full> is fired; a handler returning True keeps the
    stanza from the router."""
    hooks, out, routed = make()
    seen: list[str] = []
    for kind in ("host", "bare", "full"):
        hooks.add(f"pre-presence/{kind}", lambda e, k=kind: seen.append(k) or k == "bare")
    for to in ("example.test", "b@example.test", "b@example.test/x"):
        out.route(stanza("presence", "a@example.test/r", to), JID.parse("a@example.test/r"), JID.parse(to))
    assert seen == ["host", "bare", "full"]
    assert routed == [("presence", "example.test"), ("presence", "b@example.test/x")]
