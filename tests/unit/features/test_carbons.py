"""XEP-0280 message carbons (fedxmpp.features.carbons)."""

from __future__ import annotations

import pytest

from fedxmpp.features import carbons
from fedxmpp.xml.jid import JID
from tests.unit.features.world import World, condition, xml

CARBONS = "urn:xmpp:carbons:2"
ENABLE = f"<enable xmlns='{CARBONS}'/>"
DISABLE = f"<disable xmlns='{CARBONS}'/>"


def world(archive: bool = False) -> World:
    # Archiving is off unless a test asks, so that messages carry no stanza-id.
    return World(archive={"default_prefs": "always" if archive else "never"})


def carbon_of(el, direction: str):
    """The forwarded message inside a carbon of *direction*, or None."""
    if el.name != "message" or el.getAttribute("from") != el["to"].split("/")[0]:
        return None
    for child in el.elements():
        if child.uri == CARBONS and child.name == direction:
            forwarded = next(child.elements())
            return next(forwarded.elements())
    return None


def carbons_in(session, direction: str) -> list:
    return [c for c in (carbon_of(el, direction) for el in session.sent) if c is not None]


def bodies(messages) -> list[str]:
    return [str(next(c for c in m.elements() if c.name == "body")) for m in messages]


def setup(w: World):
    w.account("alice@example.test")
    w.account("bob@example.test")
    a1, a2, a3 = (w.login(f"alice@example.test/{r}") for r in ("one", "two", "three"))
    b = w.login("bob@example.test/b")
    for s in (a1, a2):
        assert w.iq(s, "set", ENABLE)["type"] == "result"
    for s in (a1, a2, a3, b):
        s.sent.clear()
    return a1, a2, a3, b


def test_enable_twice_and_disable_are_results():
    """Enabling again and disabling when disabled are not errors (§10.1); the
    server advertises the feature."""
    w = world()
    a = w.login("alice@example.test/a")
    for command in (ENABLE, ENABLE, DISABLE, DISABLE):
        assert w.iq(a, "set", command)["type"] == "result"
    assert CARBONS in w.ctx.disco.server_features


def test_enabling_for_someone_else_is_not_allowed():
    """Only a user's own client can change its carbons: to another user it is
    <not-allowed/>; an unknown command is <bad-request/>."""
    w = world()
    a = w.login("alice@example.test/a")
    w.login("bob@example.test/b")
    assert condition(w.iq(a, "set", ENABLE, to="bob@example.test")) == "not-allowed"
    assert condition(w.iq(a, "set", f"<private xmlns='{CARBONS}'/>", id="q2")) == "bad-request"


def test_received_carbon_goes_to_other_enabled_resources_only():
    """A message to one full JID: the target gets the original, the other enabled
    resource a <received/> carbon from the bare JID, the resource without carbons
    nothing."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.client_send(b, xml("<message to='alice@example.test/one' type='chat' id='m1'><body>hi</body></message>"))
    assert bodies(a1.sent) == ["hi"] and carbons_in(a1, "received") == []
    (copy,) = carbons_in(a2, "received")
    assert (copy["from"], copy["to"], copy["id"]) == ("bob@example.test/b", "alice@example.test/one", "m1")
    assert a2.sent[0]["type"] == "chat" and a2.sent[0]["from"] == "alice@example.test"
    assert a3.sent == []


def test_bare_jid_message_carbons_only_those_that_did_not_get_it():
    """To the bare JID, 'chat' goes to the top-priority resources (no carbon for
    them); an enabled resource of lower priority gets the carbon."""
    w = world()
    a1, a2, a3, b = setup(w)
    a1.priority, a2.priority, a3.priority = 5, 0, 5
    w.client_send(b, xml("<message to='alice@example.test' type='chat'><body>hey</body></message>"))
    assert bodies(a1.sent) == ["hey"] and bodies(a3.sent) == ["hey"]
    assert carbons_in(a1, "received") == [] and bodies(carbons_in(a2, "received")) == ["hey"]


def test_sent_carbon_goes_to_other_enabled_resources():
    """What one client sends reaches the user's other enabled resources as <sent/>,
    with its 'to'; not the sender itself, not a resource without carbons."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.client_send(a3, xml("<message to='bob@example.test' type='chat' id='s1'><body>yo</body></message>"))
    assert bodies(b.sent) == ["yo"]
    for s in (a1, a2):
        (copy,) = carbons_in(s, "sent")
        assert (copy["to"], copy["from"], copy["id"]) == ("bob@example.test", "alice@example.test/three", "s1")
    assert a3.sent == []


def test_private_is_honoured_both_ways():
    """<private/> on a sent message: no sent carbon; on a received message: no
    received carbon, and the element is removed before delivery (§7) — here for
    both users, who are local."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.client_send(a1, xml(f"<message to='bob@example.test' type='chat'><body>1</body>"
                          f"<private xmlns='{CARBONS}'/></message>"))
    assert a2.sent == [] and bodies(b.sent) == ["1"]
    assert not any(c.name == "private" for c in b.sent[0].elements())
    w.client_send(b, xml(f"<message to='alice@example.test/one' type='chat'><body>2</body>"
                         f"<private xmlns='{CARBONS}'/></message>"))
    assert a2.sent == []
    assert not any(c.name == "private" for c in a1.sent[0].elements())


@pytest.mark.parametrize("extra", ["<no-copy xmlns='urn:xmpp:hints'/>",
                                   "<x xmlns='http://jabber.org/protocol/muc#user'/>"])
def test_no_copy_hint_and_muc_traffic_are_not_carboned(extra):
    """XEP-0334 <no-copy/> and MUC private messages are copied neither way."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.client_send(b, xml(f"<message to='alice@example.test/one' type='chat'><body>x</body>{extra}</message>"))
    w.client_send(a1, xml(f"<message to='bob@example.test' type='chat'><body>y</body>{extra}</message>"))
    assert bodies(a1.sent) == ["x"] and a2.sent == []


@pytest.mark.parametrize("message, copied", [
    ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>", True),
    ("<message><body>normal with a body</body></message>", True),
    ("<message type='normal'><received xmlns='urn:xmpp:receipts' id='x'/></message>", True),
    ("<message type='normal'><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>", True),
    ("<message><subject>no body</subject></message>", False),
    ("<message type='headline'><body>news</body></message>", False),
    ("<message type='groupchat'><body>room</body></message>", False),
    ("<message type='normal'><x xmlns='jabber:x:oob'/></message>", False),
])
def test_which_messages_are_copied(message, copied):
    """§6: chat, normal with a body, IM payloads (chat states, receipts, markers) are
    copied; headline, groupchat and bodiless normal messages are not."""
    w = world()
    a1, a2, a3, b = setup(w)
    el = xml(message)
    el["to"] = "bob@example.test/b"
    w.client_send(a1, el)
    assert bool(carbons_in(a2, "sent")) is copied


def test_a_carbon_is_never_carboned():
    """A message that is itself a carbon (here, forged by a contact) is delivered but
    not copied again."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.client_send(b, xml(f"<message to='alice@example.test/one' type='chat'><received xmlns='{CARBONS}'>"
                         "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>z</body>"
                         "</message></forwarded></received></message>"))
    assert len(a1.sent) == 1 and a2.sent == []


def test_disable_and_session_end_stop_carbons():
    """After <disable/>, or once its session ended, a resource gets no more carbons."""
    w = world()
    a1, a2, a3, b = setup(w)
    w.iq(a2, "set", DISABLE)
    w.logout(a1)
    a2.sent.clear()
    w.client_send(b, xml("<message to='alice@example.test/three' type='chat'><body>1</body></message>"))
    assert a2.sent == []
    assert w.iq(a2, "set", ENABLE, id="q3")["type"] == "result"
    w.client_send(b, xml("<message to='alice@example.test/three' type='chat'><body>2</body></message>"))
    assert bodies(carbons_in(a2, "received")) == ["2"]


def test_offline_message_is_not_carboned():
    """A message that went to offline storage was delivered to nobody: an enabled
    resource with a negative priority gets no carbon of it."""
    w = world()
    w.account("alice@example.test")
    low = w.login("alice@example.test/low", priority=-1)
    w.iq(low, "set", ENABLE)
    low.sent.clear()
    b = w.login("bob@example.test/b")
    w.client_send(b, xml("<message to='alice@example.test' type='chat'><body>later</body></message>"))
    assert low.sent == [] and len(w.storage.offline.messages[("alice", "example.test")]) == 1


def test_archived_message_carbons_carry_the_stanza_id():
    """With archiving on, the received carbon forwards the message with the user's
    stanza-id, and the sent carbon carries the sender's (XEP-0313 §3.2), which the
    contact does not see."""
    w = world(archive=True)
    a1, a2, a3, b = setup(w)
    w.client_send(b, xml("<message to='alice@example.test/one' type='chat'><body>in</body></message>"))
    (received,) = carbons_in(a2, "received")
    sid = next(c for c in received.elements() if c.name == "stanza-id")
    assert sid["by"] == "alice@example.test"
    w.client_send(a1, xml("<message to='bob@example.test' type='chat'><body>out</body></message>"))
    (sent,) = carbons_in(a2, "sent")
    assert [c["by"] for c in sent.elements() if c.name == "stanza-id"] == ["alice@example.test"]
    delivered = b.sent[-1]
    assert [c["by"] for c in delivered.elements() if c.name == "stanza-id"] == ["bob@example.test"]


def test_eligible_function_rules():
    """The rules as a function: a stanza-id by the user makes a bare 'normal' message
    eligible; by someone else it does not."""
    user = JID.parse("alice@example.test")
    own = xml("<message><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.test' id='1'/></message>")
    other = xml("<message><stanza-id xmlns='urn:xmpp:sid:0' by='eve@example.test' id='1'/></message>")
    assert carbons.eligible(own, user) and not carbons.eligible(other, user)
    assert not carbons.eligible(xml("<message type='error'><body>x</body></message>"), user)


def test_copy_of_a_stanza_from_another_stream_is_in_jabber_client():
    """A message that came from a component (or server) stream, once copied into a
    carbon's <forwarded/>, is serialised in jabber:client at every level of the
    stanza — nested elements are not re-homed by the serialiser, so the copy must be."""
    from twisted.words.xish import domish

    from fedxmpp.features.carbons import clone, wrap
    from fedxmpp.xml import ns
    from fedxmpp.xml.jid import JID
    from fedxmpp.xml.serialize import serialize

    original = domish.Element((ns.COMPONENT, "message"), ns.COMPONENT)
    original["from"], original["to"] = "cora@example.test", "cody@example.test"
    original.addElement((ns.COMPONENT, "body"), content="hi")
    carbon = wrap("sent", clone(original), JID.parse("cora@example.test"), JID.parse("cora@example.test/l"))
    text = serialize(carbon, ns.CLIENT)
    assert ns.COMPONENT not in text
    assert "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'" in text
    assert original.uri == ns.COMPONENT  # the original is untouched
