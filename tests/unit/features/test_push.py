"""XEP-0357 push notifications on fakes: the whole server (``app.build``) with
real client streams and stream management, federation replaced by a recorder
(the app server at push.example.net is reached through it), a fake clock."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.storage import PushRegistration
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.c2s.world import DOMAIN, World, condition, q

A, B = f"alice@{DOMAIN}", f"bob@{DOMAIN}"
APP = "push.example.net"
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
SECRET_FORM = (f"<x xmlns='{DATA}' type='submit'>"
               "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
               "<field var='secret'><value>s3cr3t</value></field></x>")


def world(**push) -> World:
    w = World()
    if push:
        # [push] values for this test: the feature reads them from the context's config.
        cfg = dataclasses.replace(w.config, push=dataclasses.replace(w.config.push, **push))
        w.server.features.config = cfg
        w.config = cfg
    return w


def enable(client, node: str = "node-1", form: str = SECRET_FORM, jid: str = APP, id: str = "p1") -> domish.Element:
    client.send(f"<iq type='set' id='{id}'><enable xmlns='{PUSH}' jid='{jid}' node='{node}'>{form}</enable></iq>")
    replies = [s for s in client.stanzas("iq") if s.get("id") == id]
    assert len(replies) == 1
    return replies[0]


def chat(client, to: str, body: str | None, mtype: str = "chat", extra: str = "") -> None:
    inner = (f"<body>{body}</body>" if body is not None else "") + extra
    client.send(f"<message to='{to}' type='{mtype}'>{inner}</message>")


def pushes(w: World) -> list[domish.Element]:
    """The notifications that went to the app server since the last call."""
    out = [st for st, _frm, to in w.remote if to.host == APP]
    w.remote.clear()
    return out


def summary(iq: domish.Element) -> dict[str, str]:
    """The urn:xmpp:push:summary fields of a notification."""
    pubsub = next(iq.elements(PUBSUB, "pubsub"))
    item = next(next(pubsub.elements(PUBSUB, "publish")).elements(PUBSUB, "item"))
    form = next(next(item.elements(PUSH, "notification")).elements(DATA, "x"))
    fields = {f["var"]: str(next(f.elements(DATA, "value"))) for f in form.elements(DATA, "field")}
    assert fields.pop("FORM_TYPE") == "urn:xmpp:push:summary"
    return fields


def publish_options(iq: domish.Element) -> dict[str, str]:
    pubsub = next(iq.elements(PUBSUB, "pubsub"))
    for options in pubsub.elements(PUBSUB, "publish-options"):
        form = next(options.elements(DATA, "x"))
        fields = {f["var"]: str(next(f.elements(DATA, "value"))) for f in form.elements(DATA, "field")}
        assert fields.pop("FORM_TYPE") == "http://jabber.org/protocol/pubsub#publish-options"
        return fields
    return {}


def answer(w: World, iq: domish.Element, error: tuple[str, str] | None = None) -> None:
    """The app server answers a notification: a result, or an error (type, condition)."""
    reply = domish.Element((ns.CLIENT, "iq"))
    reply["id"] = iq["id"]
    reply["from"] = iq["to"]
    reply["to"] = iq["from"]
    reply["type"] = "result" if error is None else "error"
    if error is not None:
        el = reply.addElement("error")
        el["type"] = error[0]
        el.addElement((ns.STANZA_ERRORS, error[1]))
    w.router.route(reply, JID.parse(iq["to"]), JID.parse(iq["from"]))


def offline_with_push(w: World, **kw) -> None:
    """alice enables push from her phone, then closes her stream: she is offline."""
    phone = w.online("alice", "phone", sm=False)
    assert enable(phone, **kw).get("type") == "result"
    phone.close()


# -- registrations ---------------------------------------------------------------------------


def test_enable_is_stored_with_its_options_and_the_account_advertises_push():
    """<enable/> with a publish-options form is answered with a result and stored
    for the account (options without FORM_TYPE); the account's disco#info lists
    urn:xmpp:push:0; <disable/> removes it."""
    w = world()
    phone = w.online("alice", "phone")
    assert enable(phone).get("type") == "result"
    rows = w.storage.push.rows[("alice", DOMAIN)]
    assert [(r.service, r.node, r.options) for r in rows] == [(APP, "node-1", {"secret": ["s3cr3t"]})]
    phone.send("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = phone.stanzas("iq")[0]
    assert PUSH in {f.get("var") for f in info.iter(q("feature", ns.DISCO_INFO))}
    phone.send(f"<iq type='set' id='x'><disable xmlns='{PUSH}' jid='{APP}' node='node-1'/></iq>")
    assert phone.stanzas("iq")[0].get("type") == "result"
    assert w.storage.push.rows[("alice", DOMAIN)] == []


def test_bad_requests_are_refused():
    """A missing or malformed jid, the account itself as app server, a form of
    another kind, and another user's request are refused with the matching error;
    nothing is stored."""
    w = world()
    phone = w.online("alice", "phone")
    phone.send(f"<iq type='set' id='a'><enable xmlns='{PUSH}' node='n'/></iq>")
    assert condition(phone.stanzas("iq")[0]) == "bad-request"
    assert condition(enable(phone, jid="@bad@", id="b")) == "jid-malformed"
    assert condition(enable(phone, jid=A, id="c")) == "not-acceptable"
    other_form = f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>"
    assert condition(enable(phone, form=other_form, id="d")) == "bad-request"
    bob = w.online("bob", "desk")
    bob.send(f"<iq type='set' id='e' to='{A}'><enable xmlns='{PUSH}' jid='{APP}' node='n'/></iq>")
    assert condition(bob.stanzas("iq")[0]) == "not-allowed"
    assert w.storage.push.rows.get(("alice", DOMAIN), []) == []


def test_the_oldest_registration_goes_beyond_max_devices():
    w = world(max_devices=2)
    phone = w.online("alice", "phone")
    for n in (1, 2, 3):
        enable(phone, node=f"n{n}", id=f"e{n}")
    assert [r.node for r in w.storage.push.rows[("alice", DOMAIN)]] == ["n2", "n3"]


# -- offline accounts ---------------------------------------------------------------------------


def test_a_message_stored_offline_wakes_the_device_without_its_body():
    """A chat message for an offline account with push is stored, then one
    notification is published to the app server from the user's bare JID, on the
    registered node, with message-count 1 and the sender, no body (the default),
    and the client's publish options; the message still waits in offline storage."""
    w = world()
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, "wake up")
    w.clock.advance(0)
    [iq] = pushes(w)
    assert (iq["type"], iq["from"], iq["to"]) == ("set", A, APP)
    assert next(next(iq.elements(PUBSUB, "pubsub")).elements(PUBSUB, "publish"))["node"] == "node-1"
    assert summary(iq) == {"message-count": "1", "last-message-sender": f"{B}/desk"}
    assert publish_options(iq) == {"secret": "s3cr3t"}
    assert w.offline_bodies("alice") == ["wake up"]


def test_body_and_sender_follow_the_operators_choice():
    w = world(include_body=True, include_sender=False)
    offline_with_push(w, form="")
    bob = w.online("bob", "desk")
    chat(bob, A, "the body")
    w.clock.advance(0)
    [iq] = pushes(w)
    assert summary(iq) == {"message-count": "1", "last-message-body": "the body"}
    assert publish_options(iq) == {}


def test_what_does_not_wake():
    """Chat states, receipts, headlines and errors do not wake a device; an
    encrypted message without body does."""
    w = world()
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, None, extra="<composing xmlns='http://jabber.org/protocol/chatstates'/>")
    chat(bob, A, None, extra="<received xmlns='urn:xmpp:receipts' id='x'/>")
    chat(bob, A, "news", mtype="headline")
    w.clock.advance(0)
    assert pushes(w) == []
    chat(bob, A, None, extra="<encrypted xmlns='eu.siacs.conversations.axolotl'><payload>x</payload></encrypted>")
    w.clock.advance(0)
    assert len(pushes(w)) == 1


def test_no_storm_one_in_flight_then_one_per_interval_with_the_count():
    """Messages arriving while a notification is out, or within min_interval of
    the last, are counted into the next one: three messages make two notifications,
    the second counting all three."""
    w = world(min_interval=10)
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, "one")
    w.clock.advance(0)
    [first] = pushes(w)
    chat(bob, A, "two")
    chat(bob, A, "three")
    w.clock.advance(0)
    assert pushes(w) == []  # the first is still in flight
    answer(w, first)
    w.clock.advance(5)
    assert pushes(w) == []  # not before min_interval
    w.clock.advance(5)
    [second] = pushes(w)
    assert summary(second)["message-count"] == "3"
    answer(w, second)
    w.clock.advance(60)
    assert pushes(w) == []
    assert w.offline_bodies("alice") == ["one", "two", "three"]


# -- failures ----------------------------------------------------------------------------------


def test_a_permanent_error_disables_the_registration():
    """An error of type cancel (item-not-found: the app server forgot the node)
    disables the registration, in storage too; the next message wakes nothing."""
    w = world()
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, "one")
    w.clock.advance(0)
    [iq] = pushes(w)
    answer(w, iq, ("cancel", "item-not-found"))
    w.clock.advance(0)
    assert w.storage.push.rows[("alice", DOMAIN)] == []
    chat(bob, A, "two")
    w.clock.advance(60)
    assert pushes(w) == []


def test_temporary_errors_back_off_doubling_then_give_up():
    """An error of type wait, or no answer in reply_timeout, is tried again after
    retry_delay, then twice that...; after max_attempts the notification is given
    up but the registration stays, and the next message is pushed again."""
    w = world(retry_delay=10, max_attempts=3, reply_timeout=30, min_interval=0)
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, "one")
    w.clock.advance(0)
    [iq] = pushes(w)
    answer(w, iq, ("wait", "resource-constraint"))
    w.clock.advance(9)
    assert pushes(w) == []
    w.clock.advance(1)
    [retry] = pushes(w)
    w.clock.advance(30)  # no answer: the second failure
    w.clock.advance(19)
    assert pushes(w) == []
    w.clock.advance(1)
    [last] = pushes(w)
    answer(w, last, ("wait", "resource-constraint"))  # the third: given up
    w.clock.advance(1000)
    assert pushes(w) == []
    answer(w, retry)  # a late answer changes nothing
    assert len(w.storage.push.rows[("alice", DOMAIN)]) == 1
    chat(bob, A, "two")
    w.clock.advance(0)
    [again] = pushes(w)
    assert summary(again)["message-count"] == "2"


def test_an_unreachable_app_server_is_a_temporary_failure():
    """When the app server's domain cannot be reached, the server's own
    <remote-server-not-found/> bounce does not disable the registration."""
    w = world(retry_delay=10)
    offline_with_push(w)
    bob = w.online("bob", "desk")
    chat(bob, A, "one")
    w.clock.advance(0)
    [iq] = pushes(w)
    answer(w, iq, ("cancel", "remote-server-not-found"))
    w.clock.advance(10)
    assert len(pushes(w)) == 1
    assert len(w.storage.push.rows[("alice", DOMAIN)]) == 1


# -- hibernating sessions ---------------------------------------------------------------------------


def test_a_hibernating_session_with_push_stays_longer_and_wakes_its_device():
    """A stream-managed session that enabled push and whose connection breaks
    hibernates for [push] hibernation_timeout rather than sm_resume_timeout; a
    message queued for it wakes its device (once committed); resuming gets the
    message and starts the count again."""
    w = world(hibernation_timeout=3600)
    phone = w.online("alice", "phone")
    enable(phone)
    previd = phone.sm_id
    phone.drop()
    w.clock.advance(w.config.c2s.sm_resume_timeout + 1)
    session = w.sessions.get(JID.parse(f"{A}/phone"))
    assert session is not None and session.sm.hibernating
    bob = w.online("bob", "desk")
    chat(bob, f"{A}/phone", "are you there")
    w.clock.advance(0)
    [iq] = pushes(w)
    assert summary(iq) == {"message-count": "1", "last-message-sender": f"{B}/desk"}
    answer(w, iq)
    again = w.connect("alice")
    assert again.resume(previd, phone.handled).tag == q("resumed", "urn:xmpp:sm:3")
    assert again.bodies() == ["are you there"]
    w.clock.advance(3600)
    assert w.sessions.get(JID.parse(f"{A}/phone")) is session


def test_hibernation_without_push_keeps_the_usual_timeout_and_pushes_nothing():
    w = world(hibernation_timeout=3600)
    phone = w.online("alice", "phone")
    phone.drop()
    bob = w.online("bob", "desk")
    chat(bob, f"{A}/phone", "hello")
    w.clock.advance(w.config.c2s.sm_resume_timeout + 1)
    assert w.sessions.get(JID.parse(f"{A}/phone")) is None
    assert pushes(w) == []


def test_unacknowledged_messages_wake_at_hibernation_and_are_not_pushed_again_offline():
    """What the client had not acknowledged when its connection broke wakes the
    device at once; when the session then expires and those messages go to
    offline storage, they are not pushed a second time."""
    w = world(hibernation_timeout=400, min_interval=0)
    phone = w.online("alice", "phone")
    enable(phone)
    bob = w.online("bob", "desk")
    chat(bob, f"{A}/phone", "unacked")
    phone.drop()
    w.clock.advance(0)
    [iq] = pushes(w)
    assert summary(iq)["message-count"] == "1"
    answer(w, iq)
    w.clock.advance(401)
    assert w.sessions.get(JID.parse(f"{A}/phone")) is None
    w.clock.advance(1)
    assert pushes(w) == []
    assert w.offline_bodies("alice") == ["unacked"]


def test_a_group_chat_message_wakes_only_when_it_mentions_the_nickname():
    """A hibernating session learns its nickname from the room's self-presence
    (status 110); group chat messages wake its device only when they mention it."""
    w = world(min_interval=0)
    phone = w.online("alice", "phone")
    enable(phone)
    room = "room@muc.example.net"
    self_presence = domish.Element((ns.CLIENT, "presence"))
    self_presence["from"] = f"{room}/Ally"
    self_presence["to"] = f"{A}/phone"
    x = self_presence.addElement(("http://jabber.org/protocol/muc#user", "x"))
    x.addElement("status")["code"] = "110"
    w.router.route(self_presence, JID.parse(f"{room}/Ally"), JID.parse(f"{A}/phone"))
    phone.take()
    phone.drop()

    def groupchat(nick: str, body: str) -> None:
        m = domish.Element((ns.CLIENT, "message"))
        m["from"], m["to"], m["type"] = f"{room}/{nick}", f"{A}/phone", "groupchat"
        m.addElement("body", content=body)
        w.router.route(m, JID.parse(m["from"]), JID.parse(m["to"]))

    groupchat("Bo", "hello everyone")
    groupchat("Bo", "Allyson is not a mention")
    groupchat("Ally", "my own Ally message")
    w.clock.advance(0)
    assert pushes(w) == []
    groupchat("Bo", "ally: look at this")
    w.clock.advance(0)
    [iq] = pushes(w)
    assert summary(iq)["last-message-sender"] == f"{room}/Bo"


def test_push_off_is_not_offered():
    w = World()
    cfg = dataclasses.replace(w.config, push=dataclasses.replace(w.config.push, enabled=False))
    from tests.unit.fakes import build_server
    from tests.unit.storage.fakes import MemoryStorage
    server = build_server(cfg, storage=MemoryStorage())
    assert PUSH not in server.features.disco.account_features
    assert not server.hooks.has(f"iq-set/bare/{PUSH}")


@pytest.mark.parametrize("key, value, problem", [
    ("max_devices", 0, "between 1 and 100"),
    ("hibernation_timeout", -1, "between 0"),
    ("retry_delay", 0, "between 1"),
    ("max_attempts", 50, "between 1 and 20"),
    ("include_body", "yes", "true or false"),
])
def test_bad_push_config_is_one_line_naming_the_key(tmp_path, key, value, problem):
    path = tmp_path / "fedxmpp.toml"
    path.write_text(f"[push]\n{key} = {value!r}\n".replace("'", '"'))
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    text = str(info.value)
    assert f"push.{key}" in text and problem in text and "\n" not in text


def test_registration_read_from_storage_after_a_restart():
    """Registrations are read from storage when not in memory (a restarted server)."""
    w = world()
    w.storage.push.rows[("alice", DOMAIN)] = [PushRegistration(APP, "stored-node", {}, 1)]
    bob = w.online("bob", "desk")
    chat(bob, A, "after restart")
    w.clock.advance(0)
    [iq] = pushes(w)
    assert next(next(iq.elements(PUBSUB, "pubsub")).elements(PUBSUB, "publish"))["node"] == "stored-node"
