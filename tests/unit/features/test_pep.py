"""XEP-0163 personal eventing (fedxmpp.features.pep)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fedxmpp.features.pep import interest
from fedxmpp.features.pep.interest import verification_string
from tests.unit.features.world import World, condition, payload, xml

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = f"{PUBSUB}#owner"
EVENT = f"{PUBSUB}#event"
ERRORS = f"{PUBSUB}#errors"
NICK = "http://jabber.org/protocol/nick"
BOOKMARKS = "urn:xmpp:bookmarks:1"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


def disco_info(features: list[str], extra: str = "") -> str:
    return (f"<query xmlns='{DISCO_INFO}'><identity category='client' type='phone' name='T'/>"
            + "".join(f"<feature var='{f}'/>" for f in features) + extra + "</query>")


def ver_of(query_xml: str) -> str:
    return base64.b64encode(hashlib.sha1(verification_string(xml(query_xml)).encode()).digest()).decode()


def advertise(w: World, session, features: list[str], to: str | None = None, answer: bool = True,
              ver: str | None = None, priority: int = 0) -> str:
    """Send presence with caps for *features* (to *to*, or broadcast) and answer the
    server's disco#info question, if one comes; the ver."""
    query = disco_info(features)
    ver = ver or ver_of(query)
    before = len(session.sent)
    attrs = f" to='{to}'" if to else ""
    w.client_send(session, xml(f"<presence{attrs}><priority>{priority}</priority>"
                               f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{ver}'/>"
                               "</presence>"))
    if answer:
        for iq in [s for s in session.sent[before:] if s.name == "iq" and s["id"].startswith(interest.QUERY_PREFIX)]:
            w.client_send(session, xml(f"<iq type='result' id='{iq['id']}' to='{iq['from']}'>{query}</iq>"))
    return ver


def publish(w: World, session, node: str, item: str, item_id: str | None = None, options: dict | None = None,
            id: str = "pub"):
    attr = f" id='{item_id}'" if item_id else ""
    opts = ""
    if options:
        opts = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>{PUBSUB}#publish-options</value></field>"
                + "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in options.items())
                + "</x></publish-options>")
    return w.iq(session, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{attr}>{item}</item>"
                                f"</publish>{opts}</pubsub>", id=id)


def get_items(w: World, session, owner: str, node: str, inner: str = "", attrs: str = "", id: str = "get"):
    return w.iq(session, "get", f"<pubsub xmlns='{PUBSUB}'><items node='{node}'{attrs}>{inner}</items></pubsub>",
                to=owner, id=id)


def events(session, node: str | None = None) -> list:
    """The pubsub#event payloads (<items/>, <delete/>...) *session* got, in order."""
    out = []
    for el in session.sent:
        if el.name == "message" and el.getAttribute("type") == "headline":
            for ev in el.elements():
                if ev.uri == EVENT:
                    out.extend(c for c in ev.elements() if node is None or c.getAttribute("node") == node)
    return out


def item_ids(items_el) -> list[str]:
    return [i["id"] for i in items_el.elements() if i.name == "item"]


def nick(text: str) -> str:
    return f"<nick xmlns='{NICK}'>{text}</nick>"


def app_error(el) -> str | None:
    for c in el.elements():
        if c.name == "error":
            return next((x.name for x in c.elements() if x.uri == ERRORS), None)
    return None


def people(both=("bob",)):
    """alice with contacts in *both* (subscription 'both' each way), all logged in."""
    w = World()
    names = ("alice", "bob", "carol", "dave")
    for n in names:
        w.account(f"{n}@example.test")
    for n in both:
        w.subscribe("alice@example.test", f"{n}@example.test", "both")
        w.subscribe(f"{n}@example.test", "alice@example.test", "both")
    sessions = [w.login(f"{n}@example.test/{n[0]}") for n in names]
    return (w, *sessions)


# -- publish and notifications ------------------------------------------------------------------


def test_publish_notifies_contacts_with_notify_and_not_others():
    """A publish reaches the owner's +notify resource and a 'both' contact with
    +notify; not a contact without +notify, not a stranger with +notify."""
    w, a, b, c, d = people(both=("bob", "carol"))
    advertise(w, a, [NICK, f"{NICK}+notify"])
    advertise(w, b, [f"{NICK}+notify"])
    advertise(w, c, ["urn:other+notify"])
    advertise(w, d, [f"{NICK}+notify"], to="alice@example.test")
    reply = publish(w, a, NICK, nick("Alice"), item_id="current")
    assert reply["type"] == "result"
    assert item_ids(next(payload(reply).elements())) == ["current"]
    for session in (a, b):
        (items,) = events(session, NICK)
        assert item_ids(items) == ["current"]
        assert str(next(next(items.elements()).elements())) == "Alice"
        notification = [s for s in session.sent if s.name == "message"][-1]
        assert (notification["from"], notification["type"]) == ("alice@example.test", "headline")
    assert events(c) == [] and events(d) == []


def test_open_node_notifies_anyone_who_sent_presence():
    """With access model 'open' a stranger who sent presence with +notify is notified."""
    w, a, b, c, d = people()
    advertise(w, d, [f"{NICK}+notify"], to="alice@example.test")
    publish(w, a, NICK, nick("A"), options={"access_model": "open"})
    assert len(events(d, NICK)) == 1


def test_caps_are_asked_once_per_ver_and_cached():
    """Two resources with the same verified ver: one disco#info question; the answer
    is cached for the next."""
    w, a, b, c, d = people(both=("bob", "carol"))
    cache = _pep(w).caps
    advertise(w, b, [f"{NICK}+notify"])
    assert cache.asked == 1
    advertise(w, c, [f"{NICK}+notify"], answer=False)
    assert cache.asked == 1 and not [s for s in c.sent if s.name == "iq"]
    publish(w, a, NICK, nick("A"))
    assert len(events(b, NICK)) == 1 and len(events(c, NICK)) == 1


def test_unverifiable_caps_serve_only_their_sender():
    """A disco#info answer that does not match its ver is used for the resource that
    gave it, not cached: the next resource with that ver is asked again."""
    w, a, b, c, d = people(both=("bob", "carol"))
    cache = _pep(w).caps
    advertise(w, b, [f"{NICK}+notify"], ver="bogus-ver=")
    advertise(w, c, [f"{NICK}+notify"], ver="bogus-ver=")
    assert cache.asked == 2
    publish(w, a, NICK, nick("A"))
    assert len(events(b, NICK)) == 1 and len(events(c, NICK)) == 1


def test_answers_from_the_wrong_address_are_ignored():
    """A disco#info result with a question's id but from someone else teaches nothing."""
    w, a, b, c, d = people()
    advertise(w, b, [f"{NICK}+notify"], answer=False)
    (question,) = [s for s in b.sent if s.name == "iq"]
    w.client_send(c, xml(f"<iq type='result' id='{question['id']}' to='alice@example.test'>"
                         f"{disco_info([f'{NICK}+notify'])}</iq>"))
    publish(w, a, NICK, nick("A"))
    assert events(b) == []


def test_verification_string_with_extended_forms():
    """XEP-0115 §5.3 example 2 (with a XEP-0128 form) gives its published ver."""
    query = xml(
        f"<query xmlns='{DISCO_INFO}'>"
        "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
        "<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>"
        "<feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/>"
        "<feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/>"
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:dataforms:softwareinfo</value></field>"
        "<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"
        "<field var='os'><value>Mac</value></field><field var='os_version'><value>10.5.1</value></field>"
        "<field var='software'><value>Psi</value></field><field var='software_version'><value>0.11</value></field>"
        "</x></query>")
    caps = interest.Caps("http://psi-im.org", "q07IKJEyjvHSyhy//CH0CxmKi8w=", "sha-1")
    assert interest.verifies(caps, query)


def test_last_item_is_sent_when_a_contact_comes_online():
    """A contact becoming available with +notify gets the last item with a delay
    stamp; unless the node says send_last_published_item 'never'."""
    w, a, b, c, d = people(both=("bob", "carol"))
    publish(w, a, NICK, nick("A1"), item_id="1")
    publish(w, a, NICK, nick("A2"), item_id="2", id="p2")
    publish(w, a, BOOKMARKS, "<conference xmlns='urn:xmpp:bookmarks:1'/>", item_id="room@muc",
            options={"send_last_published_item": "never", "access_model": "open"}, id="p3")
    advertise(w, b, [f"{NICK}+notify", f"{BOOKMARKS}+notify"])
    (items,) = events(b)
    assert items["node"] == NICK and item_ids(items) == ["2"]
    notification = [s for s in b.sent if s.name == "message"][-1]
    assert any(x.name == "delay" for x in notification.elements())
    w.client_send(b, xml("<presence type='unavailable'/>"))
    advertise(w, b, [f"{NICK}+notify", f"{BOOKMARKS}+notify"])
    assert len(events(b, NICK)) == 2


def test_own_resources_get_their_last_items_and_notifications():
    """The owner's newly available +notify resource gets the last items of its own
    nodes; after its session ends it is notified no more."""
    w, a, b, c, d = people()
    publish(w, a, NICK, nick("me"))
    a2 = w.login("alice@example.test/second")
    advertise(w, a2, [f"{NICK}+notify"])
    assert len(events(a2, NICK)) == 1
    w.logout(a2)
    publish(w, a, NICK, nick("again"), id="p2")
    assert len(events(a2, NICK)) == 1


def test_blocked_contacts_are_not_notified():
    """XEP-0163 §4.3.4: a contact the owner blocked gets no notification."""
    w, a, b, c, d = people()
    advertise(w, b, [f"{NICK}+notify"])
    w.iq(a, "set", "<block xmlns='urn:xmpp:blocking'><item jid='bob@example.test'/></block>", id="bl")
    publish(w, a, NICK, nick("A"))
    assert events(b) == []


def test_unavailable_and_negative_priority_stop_notifications():
    """A contact that went unavailable, or has a negative priority, is not notified."""
    w, a, b, c, d = people(both=("bob", "carol"))
    advertise(w, b, [f"{NICK}+notify"])
    advertise(w, c, [f"{NICK}+notify"], priority=-1)
    w.client_send(b, xml("<presence type='unavailable'/>"))
    publish(w, a, NICK, nick("A"))
    assert events(b) == [] and events(c) == []


# -- publish-options and configuration -----------------------------------------------------------


BOOKMARK_OPTIONS = {"persist_items": "true", "max_items": "max", "send_last_published_item": "never",
                    "access_model": "whitelist"}


def test_bookmarks_round_trip_with_publish_options():
    """XEP-0402: publishing with whitelist/max creates the node so; each bookmark is an
    item; the owner reads them all back; repeating the options is accepted."""
    w, a, b, c, d = people()
    for room in ("one@muc.example", "two@muc.example", "three@muc.example"):
        reply = publish(w, a, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}' name='{room}' autojoin='true'/>",
                        item_id=room, options=BOOKMARK_OPTIONS, id=room)
        assert reply["type"] == "result"
    items = next(payload(get_items(w, a, "alice@example.test", BOOKMARKS)).elements())
    assert item_ids(items) == ["one@muc.example", "two@muc.example", "three@muc.example"]
    config = next(payload(w.iq(a, "get", f"<pubsub xmlns='{OWNER}'><configure node='{BOOKMARKS}'/></pubsub>",
                               id="cfg")).elements())
    values = {f["var"]: [str(v) for v in f.elements() if v.name == "value"] for f in next(config.elements()).elements()}
    assert values["pubsub#access_model"] == ["whitelist"] and values["pubsub#max_items"] == ["max"]
    assert condition(get_items(w, b, "alice@example.test", BOOKMARKS)) == "not-allowed"
    assert app_error(get_items(w, b, "alice@example.test", BOOKMARKS, id="g2")) == "closed-node"


def test_mismatching_publish_options_is_precondition_not_met():
    """On an existing node, an option that differs is <conflict/> with
    <precondition-not-met/>; the item is not published."""
    w, a, b, c, d = people()
    publish(w, a, NICK, nick("A"), item_id="1")
    reply = publish(w, a, NICK, nick("B"), item_id="2", options={"access_model": "open"}, id="p2")
    assert condition(reply) == "conflict" and app_error(reply) == "precondition-not-met"
    assert item_ids(next(payload(get_items(w, a, "alice@example.test", NICK)).elements())) == ["1"]


def test_unsupported_option_on_a_new_node_is_precondition_not_met():
    """An access model this service does not offer cannot be met."""
    w, a, b, c, d = people()
    reply = publish(w, a, NICK, nick("A"), options={"access_model": "authorize"})
    assert condition(reply) == "conflict" and app_error(reply) == "precondition-not-met"


def test_configure_changes_access():
    """The owner changes the access model with the owner namespace; a bad value is
    <not-acceptable/>; the new model applies to retrieval."""
    w, a, b, c, d = people()
    publish(w, a, NICK, nick("A"))
    assert condition(get_items(w, c, "alice@example.test", NICK)) == "not-authorized"
    submit = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
              f"<value>{PUBSUB}#node_config</value></field><field var='pubsub#access_model'><value>{{}}</value>"
              "</field></x>")
    bad = w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><configure node='{NICK}'>{submit.format('nobody')}</configure>"
                         "</pubsub>", id="c1")
    assert condition(bad) == "not-acceptable"
    ok = w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><configure node='{NICK}'>{submit.format('open')}</configure>"
                        "</pubsub>", id="c2")
    assert ok["type"] == "result"
    assert get_items(w, c, "alice@example.test", NICK, id="g2")["type"] == "result"
    assert w.storage.pubsub.nodes_by_user[("alice", "example.test")][NICK].config["pubsub#access_model"] == "open"


def test_whitelist_members_may_read():
    """A member affiliation opens a whitelist node; an outcast is refused even on an
    open node; the owner lists affiliations."""
    w, a, b, c, d = people()
    publish(w, a, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", options={"access_model": "whitelist"})
    reply = w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><affiliations node='{BOOKMARKS}'>"
                           "<affiliation jid='carol@example.test' affiliation='member'/></affiliations></pubsub>",
                 id="aff")
    assert reply["type"] == "result"
    assert get_items(w, c, "alice@example.test", BOOKMARKS)["type"] == "result"
    listed = next(payload(w.iq(a, "get", f"<pubsub xmlns='{OWNER}'><affiliations node='{BOOKMARKS}'/></pubsub>",
                               id="aff2")).elements())
    assert [(x["jid"], x["affiliation"]) for x in listed.elements()] == [
        ("alice@example.test", "owner"), ("carol@example.test", "member")]
    publish(w, a, NICK, nick("A"), options={"access_model": "open"}, id="p2")
    w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><affiliations node='{NICK}'>"
                   "<affiliation jid='dave@example.test' affiliation='outcast'/></affiliations></pubsub>", id="aff3")
    assert condition(get_items(w, d, "alice@example.test", NICK)) == "forbidden"


# -- retrieval, retraction, deletion ------------------------------------------------------------------


def test_retrieval_by_access_model():
    """'presence' (the default): the owner and 'from'/'both' contacts read; a stranger
    gets <not-authorized/> with <presence-subscription-required/>; a missing node is
    <item-not-found/>."""
    w, a, b, c, d = people()
    publish(w, a, NICK, nick("A"))
    assert get_items(w, a, "alice@example.test", NICK)["type"] == "result"
    assert get_items(w, b, "alice@example.test", NICK, id="g1")["type"] == "result"
    refused = get_items(w, c, "alice@example.test", NICK, id="g2")
    assert condition(refused) == "not-authorized" and app_error(refused) == "presence-subscription-required"
    assert condition(get_items(w, b, "alice@example.test", "urn:none", id="g3")) == "item-not-found"


def test_retrieval_by_id_and_max_items():
    """Items by id (unknown ids skipped), or the newest max_items, oldest first."""
    w, a, b, c, d = people()
    for i in range(4):
        publish(w, a, "urn:xmpp:omemo:2:bundles", f"<bundle xmlns='urn:xmpp:omemo:2' n='{i}'/>", item_id=str(i),
                options={"max_items": "max", "access_model": "open"}, id=f"p{i}")
    node = "urn:xmpp:omemo:2:bundles"
    got = get_items(w, c, "alice@example.test", node, inner="<item id='2'/><item id='0'/><item id='9'/>")
    assert item_ids(next(payload(got).elements())) == ["0", "2"]
    got = get_items(w, c, "alice@example.test", node, attrs=" max_items='2'", id="g2")
    assert item_ids(next(payload(got).elements())) == ["2", "3"]


def test_max_items_keeps_the_newest():
    """The default node keeps one item; max_items 2 keeps two; persist_items false
    keeps the last one only."""
    w, a, b, c, d = people()
    for i in range(3):
        publish(w, a, NICK, nick(str(i)), item_id=str(i), id=f"a{i}")
        publish(w, a, "urn:two", "<x xmlns='urn:two'/>", item_id=str(i), options={"max_items": "2"}, id=f"b{i}")
        publish(w, a, "urn:volatile", "<x xmlns='urn:v'/>", item_id=str(i),
                options={"persist_items": "false", "max_items": "max"}, id=f"c{i}")
    stored = w.storage.pubsub.items_by_node
    assert [i.item_id for i in stored[("alice", "example.test", NICK)]] == ["2"]
    assert [i.item_id for i in stored[("alice", "example.test", "urn:two")]] == ["1", "2"]
    assert [i.item_id for i in stored[("alice", "example.test", "urn:volatile")]] == ["2"]


def test_retract_notifies_and_removes():
    """A retraction removes the item and notifies <retract id/>; an unknown item is
    <item-not-found/>; only the owner retracts."""
    w, a, b, c, d = people()
    advertise(w, b, [f"{BOOKMARKS}+notify"])
    options = {"max_items": "max", "access_model": "presence"}
    publish(w, a, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", item_id="r1", options=options)
    publish(w, a, BOOKMARKS, f"<conference xmlns='{BOOKMARKS}'/>", item_id="r2", options=options, id="p2")
    retract = f"<pubsub xmlns='{PUBSUB}'><retract node='{BOOKMARKS}' notify='true'><item id='r1'/></retract></pubsub>"
    assert condition(w.iq(b, "set", retract, to="alice@example.test", id="r0")) == "forbidden"
    assert w.iq(a, "set", retract, id="r1")["type"] == "result"
    assert condition(w.iq(a, "set", retract, id="r2")) == "item-not-found"
    last = events(b, BOOKMARKS)[-1]
    assert [(x.name, x["id"]) for x in last.elements()] == [("retract", "r1")]
    items = next(payload(get_items(w, a, "alice@example.test", BOOKMARKS)).elements())
    assert item_ids(items) == ["r2"]


def test_delete_and_purge():
    """Deleting a node notifies <delete/> and removes it; purging empties it."""
    w, a, b, c, d = people()
    advertise(w, b, [f"{NICK}+notify", "urn:p+notify"])
    publish(w, a, NICK, nick("A"))
    publish(w, a, "urn:p", "<x xmlns='urn:p'/>", id="p2")
    assert w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><delete node='{NICK}'/></pubsub>", id="d")["type"] == "result"
    assert [e.name for e in events(b, NICK)] == ["items", "delete"]
    assert condition(get_items(w, a, "alice@example.test", NICK)) == "item-not-found"
    assert w.iq(a, "set", f"<pubsub xmlns='{OWNER}'><purge node='urn:p'/></pubsub>", id="pu")["type"] == "result"
    assert [e.name for e in events(b, "urn:p")] == ["items", "purge"]
    assert item_ids(next(payload(get_items(w, a, "alice@example.test", "urn:p", id="g2")).elements())) == []


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("inner, error, app", [
    ("<publish><item><x xmlns='urn:x'/></item></publish>", "bad-request", "nodeid-required"),
    ("<publish node='n'/>", "bad-request", "item-required"),
    ("<publish node='n'><item/></publish>", "bad-request", "payload-required"),
    ("<publish node='n'><item><x xmlns='urn:x'/><y xmlns='urn:y'/></item></publish>", "bad-request",
     "invalid-payload"),
    ("<subscribe node='n' jid='alice@example.test'/>", "feature-not-implemented", "unsupported"),
    ("<create/>", "not-acceptable", "nodeid-required"),
])
def test_bad_requests(inner, error, app):
    """XEP-0060 errors, with their pubsub#errors conditions."""
    w, a, b, c, d = people()
    reply = w.iq(a, "set", f"<pubsub xmlns='{PUBSUB}'>{inner}</pubsub>")
    assert condition(reply) == error and app_error(reply) == app


def test_only_the_owner_publishes_and_manages():
    """Publishing to, or configuring, someone else's node is <forbidden/>."""
    w, a, b, c, d = people()
    reply = w.iq(b, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='{NICK}'><item>{nick('x')}</item></publish>"
                           "</pubsub>", to="alice@example.test")
    assert condition(reply) == "forbidden"
    reply = w.iq(b, "get", f"<pubsub xmlns='{OWNER}'><configure node='{NICK}'/></pubsub>", to="alice@example.test",
                 id="q2")
    assert condition(reply) == "forbidden"


def test_limits():
    """An item larger than max_item_size is <not-acceptable/> with <payload-too-big/>;
    one node more than max_nodes is <policy-violation/>."""
    w = World(pep={"max_nodes": 2, "max_item_size": 1024})
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    big = publish(w, a, "urn:big", f"<x xmlns='urn:big'>{'x' * 2000}</x>")
    assert condition(big) == "not-acceptable" and app_error(big) == "payload-too-big"
    for i in range(2):
        assert publish(w, a, f"urn:n{i}", "<x xmlns='urn:n'/>", id=f"n{i}")["type"] == "result"
    assert condition(publish(w, a, "urn:n3", "<x xmlns='urn:n'/>", id="n3")) == "policy-violation"


def test_create_then_publish_and_conflict():
    """A created node (with its configuration) takes items; creating it again is
    <conflict/>."""
    w, a, b, c, d = people()
    create = (f"<pubsub xmlns='{PUBSUB}'><create node='urn:c'/><configure><x xmlns='jabber:x:data' type='submit'>"
              f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
              "<field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub>")
    assert w.iq(a, "set", create)["type"] == "result"
    assert condition(w.iq(a, "set", create, id="again")) == "conflict"
    publish(w, a, "urn:c", "<x xmlns='urn:c'/>", id="p")
    assert get_items(w, c, "alice@example.test", "urn:c")["type"] == "result"


def test_disco_identity_and_features():
    """The account is a pubsub/pep service with the XEP-0060 features clients check."""
    w, a, b, c, d = people()
    reply = w.iq(a, "get", f"<query xmlns='{DISCO_INFO}'/>")
    identities = [(i["category"], i["type"]) for i in payload(reply).elements() if i.name == "identity"]
    features = {f["var"] for f in payload(reply).elements() if f.name == "feature"}
    assert ("pubsub", "pep") in identities
    assert {PUBSUB, f"{PUBSUB}#publish", f"{PUBSUB}#publish-options", f"{PUBSUB}#config-node-max",
            f"{PUBSUB}#access-whitelist", f"{PUBSUB}#filtered-notifications"} <= features


def _pep(w: World):
    from fedxmpp.features.pep.service import Pep
    for handlers in w.hooks._handlers.values():
        for entry in handlers:
            owner = getattr(entry.handler, "__self__", None)
            if isinstance(owner, Pep):
                return owner
    raise AssertionError("no PEP service registered")
