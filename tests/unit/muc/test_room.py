"""The MUC service and its rooms' state machine (XEP-0045), driven through the
service's route with a recording router, a fake clock and in-memory storage."""

from __future__ import annotations

import dataclasses

import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.features._shared import element_from_bytes
from fedxmpp.muc.service import MucService
from fedxmpp.xml.jid import JID
from tests.unit.storage.fakes import MemoryMucStore

MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
OWNER = MUC + "#owner"
ADMIN = MUC + "#admin"
SERVICE = "conference.example.test"
ROOM = f"lobby@{SERVICE}"
ALICE, BOB, CAROL = "alice@example.test/a", "bob@example.test/b", "carol@example.test/c"
NOW = 1_700_000_000.0


class Recorder:
    def __init__(self) -> None:
        self.sent: list[domish.Element] = []
        self.routes: dict[str, object] = {}

    def add_route(self, domain: str, route: object) -> None:
        self.routes[domain] = route

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        assert stanza["from"] == frm.full() and stanza["to"] == to.full()
        self.sent.append(stanza)


class World:
    def __init__(self, store: MemoryMucStore | None = None, **muc: object) -> None:
        cfg = config.load(None)
        self.muc_config = dataclasses.replace(cfg.muc, domain=SERVICE, **muc)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.router = Recorder()
        self.store = store if store is not None else MemoryMucStore()
        self.service = MucService(self.muc_config, ("example.test",), self.router, self.clock)
        defer.Deferred.fromCoroutine(self.service.load(self.store))  # the fake store answers at once
        self.ids = 0

    def send(self, frm: str, text: str) -> list[domish.Element]:
        """Route *text* from *frm* and return what the service sent because of it."""
        el = element_from_bytes(text.encode())
        el["from"] = frm
        self.ids += 1
        el.attributes.setdefault("id", f"id{self.ids}")
        before = len(self.router.sent)
        self.service.route(el, JID.parse(frm), JID.parse(el["to"]))
        return self.router.sent[before:]

    def join(self, frm: str, nick: str, extra: str = "", to: str = ROOM) -> list[domish.Element]:
        return self.send(frm, f"<presence xmlns='jabber:client' to='{to}/{nick}'><x xmlns='{MUC}'>{extra}</x>"
                              "</presence>")

    def say(self, frm: str, body: str, to: str = ROOM, mtype: str = "groupchat") -> list[domish.Element]:
        return self.send(frm, f"<message xmlns='jabber:client' to='{to}' type='{mtype}'><body>{body}</body></message>")

    def iq(self, frm: str, itype: str, payload: str, to: str = ROOM) -> domish.Element:
        out = self.send(frm, f"<iq xmlns='jabber:client' to='{to}' type='{itype}'>{payload}</iq>")
        iqs = [o for o in out if o.name == "iq"]
        assert len(iqs) == 1, [o.toXml() for o in out]
        return iqs[0]

    def instant(self, frm: str = ALICE) -> domish.Element:
        return self.iq(frm, "set", f"<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>")

    def configure(self, frm: str, **fields: str) -> domish.Element:
        body = "".join(f"<field var='muc#roomconfig_{k}'><value>{v}</value></field>" for k, v in fields.items())
        return self.iq(frm, "set", f"<query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                                   f"<field var='FORM_TYPE'><value>{MUC}#roomconfig</value></field>{body}</x></query>")

    def room_with(self, *people: tuple[str, str]) -> None:
        self.join(*people[0])
        assert self.instant()["type"] == "result"
        for who, nick in people[1:]:
            self.join(who, nick)


def codes(p: domish.Element) -> set[str]:
    x = _child(p, USER, "x")
    return {st["code"] for st in x.elements() if st.name == "status"} if x is not None else set()


def item(p: domish.Element) -> domish.Element:
    return _child(_child(p, USER, "x"), USER, "item")


def error(p: domish.Element) -> str | None:
    e = next((c for c in p.elements() if c.name == "error"), None)
    if e is None:
        return None
    return next(c.name for c in e.elements() if c.uri == "urn:ietf:params:xml:ns:xmpp-stanzas" and c.name != "text")


def _child(el: domish.Element | None, uri: str, name: str) -> domish.Element | None:
    if el is None:
        return None
    return next((c for c in el.elements() if c.uri == uri and c.name == name), None)


def to(out: list[domish.Element], jid: str, name: str | None = None) -> list[domish.Element]:
    return [o for o in out if o["to"] == jid and (name is None or o.name == name)]


def test_first_joiner_creates_a_locked_room_and_owns_it():
    """The first to join creates the room (201 + 110), is owner and moderator, gets the
    (empty) subject; the room stays locked to others (<item-not-found/>) and unlisted
    until the owner accepts the instant room."""
    w = World()
    out = w.join(ALICE, "Alice")
    presence, subject = out
    assert presence["from"] == f"{ROOM}/Alice" and codes(presence) == {"110", "170", "201"}
    assert presence["id"] == "id1"  # the join presence's id, reflected
    assert (item(presence)["affiliation"], item(presence)["role"]) == ("owner", "moderator")
    assert _child(presence, "urn:xmpp:occupant-id:0", "occupant-id") is not None
    assert subject.name == "message" and _child(subject, "jabber:client", "subject") is not None
    assert error(w.join(BOB, "Bob")[0]) == "item-not-found"
    items = w.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=SERVICE)
    assert list(items.elements())[0].children == []
    assert w.instant()["type"] == "result"
    out = w.join(BOB, "Bob")
    assert [o["from"] for o in to(out, BOB, "presence")] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
    assert codes(to(out, BOB, "presence")[-1]) == {"110", "170"}
    assert item(to(out, BOB, "presence")[0]).getAttribute("jid") is None  # semi-anonymous
    assert item(to(out, ALICE, "presence")[0])["jid"] == BOB  # moderators see real JIDs
    items = w.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=SERVICE)
    assert [i["jid"] for i in list(items.elements())[0].elements()] == [ROOM]


def test_taken_nick_is_a_conflict_and_nick_change_sends_303():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    assert error(w.join(CAROL, "Bob")[0]) == "conflict"
    out = w.send(BOB, f"<presence xmlns='jabber:client' to='{ROOM}/Robert'/>")
    gone = to(out, ALICE, "presence")[0]
    assert gone["type"] == "unavailable" and codes(gone) == {"303"} and item(gone)["nick"] == "Robert"
    assert codes(to(out, BOB, "presence")[0]) == {"303", "110"}
    assert to(out, ALICE, "presence")[1]["from"] == f"{ROOM}/Robert"
    assert error(w.send(ALICE, f"<presence xmlns='jabber:client' to='{ROOM}/Robert'/>")[0]) == "conflict"


def test_groupchat_is_reflected_to_everyone_with_the_same_id():
    """Everyone, the sender included, gets the message from room/nick with the sender's id
    and an occupant-id; a non-occupant gets <not-acceptable/>."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(BOB, f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'><body>hi</body>"
                      "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>")
    assert sorted(o["to"] for o in out) == [ALICE, BOB]
    assert all(o["from"] == f"{ROOM}/Bob" and o["id"] == "m1" for o in out)
    ids = [_child(o, "urn:xmpp:occupant-id:0", "occupant-id")["id"] for o in out]
    assert ids[0] == ids[1] != "forged"
    assert error(w.say(CAROL, "let me in")[0]) == "not-acceptable"


def test_history_on_join_honours_maxstanzas_and_seconds():
    w = World()
    w.room_with((ALICE, "Alice"))
    for n in range(3):
        w.say(ALICE, f"m{n}")
        w.clock.advance(100)
    out = w.join(BOB, "Bob", "<history maxstanzas='2'/>")
    bodies = [str(_child(o, "jabber:client", "body")) for o in to(out, BOB, "message") if _child(o, "jabber:client", "body")]
    assert bodies == ["m1", "m2"]
    delayed = [o for o in to(out, BOB, "message") if _child(o, "urn:xmpp:delay", "delay") is not None]
    assert len(delayed) == 2
    out = w.join(CAROL, "Carol", "<history seconds='150'/>")
    bodies = [str(_child(o, "jabber:client", "body")) for o in to(out, CAROL, "message") if _child(o, "jabber:client", "body")]
    assert bodies == ["m2"]
    w2 = World(history_length=1)
    w2.room_with((ALICE, "Alice"))
    w2.say(ALICE, "a")
    w2.say(ALICE, "b")
    out = w2.join(BOB, "Bob")
    assert [str(_child(o, "jabber:client", "body")) for o in to(out, BOB, "message")
            if _child(o, "jabber:client", "body")] == ["b"]


def test_subject_changes_only_by_moderators_unless_allowed():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    subj = f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><subject>News</subject></message>"
    assert error(w.send(BOB, subj)[0]) == "forbidden"
    assert len(w.send(ALICE, subj)) == 2
    out = w.join(CAROL, "Carol")
    last = to(out, CAROL, "message")[-1]
    assert str(_child(last, "jabber:client", "subject")) == "News" and last["from"] == f"{ROOM}/Alice"
    w.configure(ALICE, changesubject="1")
    assert len(w.send(BOB, subj)) == 3


def test_private_messages_between_occupants():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.say(BOB, "psst", to=f"{ROOM}/Alice", mtype="chat")
    assert [(o["to"], o["from"]) for o in out] == [(ALICE, f"{ROOM}/Bob")]
    assert error(w.say(CAROL, "psst", to=f"{ROOM}/Alice", mtype="chat")[0]) == "not-acceptable"
    assert error(w.say(BOB, "psst", to=f"{ROOM}/Nobody", mtype="chat")[0]) == "item-not-found"


def test_leave_and_the_last_one_out_ends_a_temporary_room():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(BOB, f"<presence xmlns='jabber:client' to='{ROOM}/Bob' type='unavailable'/>")
    assert codes(to(out, BOB)[0]) == {"110"} and to(out, ALICE)[0]["type"] == "unavailable"
    w.send(ALICE, f"<presence xmlns='jabber:client' to='{ROOM}/Alice' type='unavailable'/>")
    assert "lobby" not in w.service.rooms


def test_kick_ban_and_voice():
    """A moderator kicks (307), an admin bans (301, then <forbidden/> on return), and a
    visitor in a moderated room may not speak until given voice."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol"))
    r = w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item nick='Bob' role='none'><reason>out</reason></item></query>")
    assert r["type"] == "result"
    assert "lobby" in w.service.rooms and "Bob" not in w.service.rooms["lobby"].occupants
    assert error(w.iq(CAROL, "set", f"<query xmlns='{ADMIN}'><item nick='Alice' role='none'/></query>")) == "forbidden"
    w.join(BOB, "Bob")
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='{ADMIN}'>"
                        "<item jid='bob@example.test' affiliation='outcast'/></query></iq>")
    kicked = to(out, BOB, "presence")[0]
    assert codes(kicked) == {"301", "110"}
    assert error(w.join(BOB, "Bob")[0]) == "forbidden"
    w.configure(ALICE, moderatedroom="1")
    assert error(w.say(CAROL, "hello")[0]) == "forbidden"
    w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item nick='Carol' role='participant'/></query>")
    assert len(w.say(CAROL, "hello")) == 2


def test_members_only_password_and_full_rooms():
    w = World()
    w.room_with((ALICE, "Alice"))
    w.configure(ALICE, membersonly="1")
    assert error(w.join(BOB, "Bob")[0]) == "registration-required"
    w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item jid='bob@example.test' affiliation='member'/></query>")
    assert codes(w.join(BOB, "Bob")[-2]) == {"110", "170"}
    w.configure(ALICE, membersonly="0", passwordprotectedroom="1", roomsecret="sesame", maxusers="3")
    assert error(w.join(CAROL, "Carol")[0]) == "not-authorized"
    assert codes(w.join(CAROL, "Carol", "<password>sesame</password>")[-2]) == {"110", "170"}
    assert error(w.join("dave@example.test/d", "Dave", "<password>sesame</password>")[0]) == "service-unavailable"


def test_owner_config_form_and_affiliation_lists():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    form = w.iq(ALICE, "get", f"<query xmlns='{OWNER}'/>")
    assert "muc#roomconfig_whois" in form.toXml() and "muc#roomconfig_maxusers" in form.toXml()
    assert error(w.iq(BOB, "get", f"<query xmlns='{OWNER}'/>")) == "forbidden"
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='{OWNER}'>"
                        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_whois'>"
                        "<value>anyone</value></field></x></query></iq>")
    notices = [o for o in out if o.name == "message"]
    assert {o["to"] for o in notices} == {ALICE, BOB} and codes(notices[0]) == {"104", "172"}
    owners = w.iq(ALICE, "get", f"<query xmlns='{ADMIN}'><item affiliation='owner'/></query>")
    assert "alice@example.test" in owners.toXml()
    assert error(w.iq(BOB, "get", f"<query xmlns='{ADMIN}'><item affiliation='owner'/></query>")) == "forbidden"
    r = w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item jid='alice@example.test' affiliation='member'/></query>")
    assert error(r) == "conflict"  # the last owner stays


def test_disco_info_of_a_room_lists_features_and_roominfo():
    w = World()
    w.room_with((ALICE, "Alice"))
    w.configure(ALICE, roomname="The Lobby", roomdesc="Chat")
    info = w.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>").toXml()
    for needle in ("muc_temporary", "muc_public", "muc_open", "muc_unsecured", "muc_unmoderated",
                   "muc_semianonymous", "urn:xmpp:occupant-id:0", "muc#roominfo", "The Lobby", "conference"):
        assert needle in info, needle


def test_self_ping():
    w = World()
    w.room_with((ALICE, "Alice"))
    ping = "<ping xmlns='urn:xmpp:ping'/>"
    assert w.iq(ALICE, "get", ping, to=f"{ROOM}/Alice")["type"] == "result"
    assert error(w.iq(BOB, "get", ping, to=f"{ROOM}/Alice")) == "not-acceptable"


def test_occupant_rate_is_bounded():
    w = World(occupant_rate=1.0, occupant_burst=2)
    w.room_with((ALICE, "Alice"))
    assert len(w.say(ALICE, "1")) == 1 and len(w.say(ALICE, "2")) == 1
    assert error(w.say(ALICE, "3")[0]) == "resource-constraint"
    w.clock.advance(1)
    assert error(w.say(ALICE, "4")[0]) is None


def test_creation_policy_and_rooms_per_user():
    w = World(create="admins", admins=("carol@example.test",))
    assert error(w.join(ALICE, "Alice")[0]) == "not-allowed"
    assert codes(w.join(CAROL, "Carol")[0]) == {"110", "170", "201"}
    w = World()
    assert error(w.join("zed@remote.test/z", "Zed")[0]) == "not-allowed"
    w = World(rooms_per_user=1)
    w.join(ALICE, "Alice")
    assert error(w.join(ALICE, "Alice", to=f"second@{SERVICE}")[0]) == "resource-constraint"


def test_destroy_tells_occupants_where_to_go():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='{OWNER}'>"
                        f"<destroy jid='new@{SERVICE}'><reason>moved</reason></destroy></query></iq>")
    p = to(out, BOB, "presence")[0]
    assert p["type"] == "unavailable" and f"new@{SERVICE}" in p.toXml() and "moved" in p.toXml()
    assert "lobby" not in w.service.rooms


@pytest_twisted.ensureDeferred
async def test_persistent_rooms_come_back_with_config_and_owner():
    store = MemoryMucStore()
    w = World(store)
    w.room_with((ALICE, "Alice"))
    w.configure(ALICE, persistentroom="1", roomname="Kept")
    w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item jid='bob@example.test' affiliation='outcast'/></query>")
    w.send(ALICE, f"<presence xmlns='jabber:client' to='{ROOM}/Alice' type='unavailable'/>")
    assert "lobby" in w.service.rooms
    again = World(store)
    room = again.service.rooms["lobby"]
    assert room.config.name == "Kept" and room.config.persistent
    assert room.affiliations == {"alice@example.test": "owner", "bob@example.test": "outcast"}
    assert error(again.join(BOB, "Bob")[0]) == "forbidden"
    assert codes(again.join(ALICE, "Alice")[0]) == {"110", "170"}
    again.configure(ALICE, persistentroom="0")
    assert store.stored == {}


def test_mediated_invitation_is_forwarded_from_the_room():
    w = World()
    w.room_with((ALICE, "Alice"))
    out = w.send(ALICE, f"<message xmlns='jabber:client' to='{ROOM}'><x xmlns='{USER}'>"
                        "<invite to='bob@example.test'><reason>join us</reason></invite></x></message>")
    assert [o["to"] for o in out] == ["bob@example.test"]
    assert out[0]["from"] == ROOM and "join us" in out[0].toXml() and "jabber:x:conference" in out[0].toXml()


def test_an_error_from_an_occupant_takes_it_out_with_333():
    """A message bounced by an occupant's server (its client is gone) removes the
    occupant, the others seeing status 333."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(BOB, f"<message xmlns='jabber:client' to='{ROOM}/Bob' type='error'>"
                      "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                      "</error></message>")
    assert codes(to(out, ALICE)[0]) == {"333"} and "Bob" not in w.service.rooms["lobby"].occupants


def test_shutdown_tells_every_occupant_with_332():
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    before = len(w.router.sent)
    w.service.shutdown()
    out = w.router.sent[before:]
    assert len(out) == 4 and all(o["type"] == "unavailable" and "332" in codes(o) for o in out)


def test_room_archive_stamps_stores_and_answers_mam_queries():
    """Groupchat messages get a stanza-id by the room (a forged one is dropped), go to
    the room's archive, and a MAM query on the room JID returns them as results
    from the room then <fin/> with RSM; outcasts may not read it."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(ALICE, f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>one</body>"
                        f"<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='{ROOM}'/></message>")
    sids = [[c["id"] for c in o.elements() if c.uri == "urn:xmpp:sid:0"] for o in out]
    assert len(sids[0]) == 1 and sids[0] == sids[1] and sids[0][0] != "forged"
    w.say(BOB, "two")
    out = w.send(CAROL, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='urn:xmpp:mam:2' "
                        "queryid='q1'/></iq>")
    results, fin = out[:-1], out[-1]
    assert [r["from"] for r in results] == [ROOM, ROOM] and all(r["to"] == CAROL for r in results)
    assert "one" in results[0].toXml() and "two" in results[1].toXml() and "q1" in results[0].toXml()
    assert fin["type"] == "result" and "complete" in fin.toXml() and sids[0][0] in results[0].toXml()
    page = w.send(CAROL, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='urn:xmpp:mam:2'>"
                         "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set></query></iq>")
    assert len(page) == 2 and "two" in page[0].toXml()
    w.iq(ALICE, "set", f"<query xmlns='{ADMIN}'><item jid='carol@example.test' affiliation='outcast'/></query>")
    denied = w.iq(CAROL, "set", "<query xmlns='urn:xmpp:mam:2'/>")
    assert error(denied) == "forbidden"
    info = w.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>").toXml()
    assert "urn:xmpp:mam:2" in info


def test_no_archive_when_archive_length_is_zero():
    w = World(archive_length=0)
    assert codes(w.join(ALICE, "Alice")[0]) == {"110", "201"}  # no 170: nothing is logged
    w.instant()
    out = w.say(ALICE, "one")
    assert "urn:xmpp:sid:0" not in out[0].toXml()
    assert error(w.iq(ALICE, "set", "<query xmlns='urn:xmpp:mam:2'/>")) == "service-unavailable"


def test_a_join_from_an_occupant_sends_the_room_again():
    """A client that joins again without leaving (it lost its state) gets the others'
    presence, its own with 110, the history and the subject, as on entering."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    w.say(ALICE, "earlier")
    out = w.join(BOB, "Bob")
    mine = to(out, BOB)
    assert [o.name for o in mine] == ["presence", "presence", "message", "message"]
    assert mine[0]["from"] == f"{ROOM}/Alice" and "110" in codes(mine[1])
    assert [o["from"] for o in to(out, ALICE)] == [f"{ROOM}/Bob"]


def test_registration_reserves_a_nick_and_makes_a_member():
    """jabber:iq:register with a room (§7.10): the form, a reserved nickname that
    makes the user a member and that nobody else may take (<conflict/>), found
    again with disco#info node x-roomuser-item, kept across a restart, and
    cancelled with <remove/>."""
    store = MemoryMucStore()
    w = World(store)
    w.room_with((ALICE, "Alice"))
    w.configure(ALICE, persistentroom="1")
    form = w.iq(BOB, "get", "<query xmlns='jabber:iq:register'/>")
    assert "muc#register_roomnick" in form.toXml() and "muc#register" in form.toXml()
    register = ("<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE'><value>{MUC}#register</value></field>"
                "<field var='muc#register_roomnick'><value>{nick}</value></field></x></query>")
    assert error(w.iq(BOB, "set", register.format(nick="Alice"))) == "conflict"  # in use by another
    assert w.iq(BOB, "set", register.format(nick="Bobby"))["type"] == "result"
    assert w.service.rooms["lobby"].affiliations["bob@example.test"] == "member"
    assert error(w.join(CAROL, "Bobby")[0]) == "conflict"
    assert "<username>Bobby</username>" in w.iq(BOB, "get", "<query xmlns='jabber:iq:register'/>").toXml()
    again = World(store)
    info = again.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/>")
    assert "name='Bobby'" in info.toXml() or 'name="Bobby"' in info.toXml()
    assert error(again.join(CAROL, "Bobby")[0]) == "conflict"
    assert again.iq(BOB, "set", "<query xmlns='jabber:iq:register'><remove/></query>")["type"] == "result"
    assert "bob@example.test" not in again.service.rooms["lobby"].affiliations
    assert codes(again.join(CAROL, "Bobby")[0]) >= {"110"}


def test_a_temporary_room_takes_its_archive_with_it():
    """When the last occupant leaves a temporary room, its archive goes too: a new
    room of the same name starts empty.  A persistent room turned temporary keeps
    its archive while it lives."""
    w = World()
    w.room_with((ALICE, "Alice"))
    w.configure(ALICE, persistentroom="1")
    w.say(ALICE, "kept")
    w.configure(ALICE, persistentroom="0")
    assert len(w.store.archived[(SERVICE, "lobby")]) == 1
    w.send(ALICE, f"<presence xmlns='jabber:client' to='{ROOM}/Alice' type='unavailable'/>")
    assert (SERVICE, "lobby") not in w.store.archived


def test_voice_request_goes_to_moderators_who_may_grant_it():
    """§7.13/§8.6: a visitor's muc#request reaches the moderators as a form; one who
    submits it with muc#request_allow true gives the visitor voice."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    w.configure(ALICE, moderatedroom="1")
    w.send(BOB, f"<presence xmlns='jabber:client' to='{ROOM}/Bob' type='unavailable'/>")
    w.join(BOB, "Bob")
    assert w.service.rooms["lobby"].occupants["Bob"].role == "visitor"
    ask = (f"<message xmlns='jabber:client' to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
           f"<field var='FORM_TYPE'><value>{MUC}#request</value></field>"
           "<field var='muc#role'><value>participant</value></field></x></message>")
    out = w.send(BOB, ask)
    assert [o["to"] for o in out] == [ALICE] and "muc#request_allow" in out[0].toXml()
    answer = (f"<message xmlns='jabber:client' to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
              f"<field var='FORM_TYPE'><value>{MUC}#request</value></field>"
              "<field var='muc#roomnick'><value>Bob</value></field>"
              "<field var='muc#request_allow'><value>true</value></field></x></message>")
    assert error(w.send(BOB, answer)[0]) == "forbidden"
    w.send(ALICE, answer)
    assert w.service.rooms["lobby"].occupants["Bob"].role == "participant"


def test_a_groupchat_message_is_settled_when_its_archive_row_is_written():
    """The service's route returns the archive write of a groupchat message (what a
    stream-management ack waits for), and the service's flush waits for it."""
    w = World()
    w.room_with((ALICE, "Alice"))
    pending: defer.Deferred = defer.Deferred()
    store_archive = w.store.archive

    async def slow_archive(*args, **kw):
        await pending
        await store_archive(*args, **kw)

    w.store.archive = slow_archive
    el = element_from_bytes(f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat'><body>x</body></message>"
                            .encode())
    el["from"] = ALICE
    settled = w.service.route(el, JID.parse(ALICE), JID.parse(ROOM))
    flushed = w.service.flushed()
    assert isinstance(settled, defer.Deferred) and not settled.called and not flushed.called
    pending.callback(None)
    assert settled.called and flushed.called and len(w.store.archived[(SERVICE, "lobby")]) == 1
    unarchived = World(archive_length=0)
    unarchived.room_with((ALICE, "Alice"))
    assert unarchived.service.route(el, JID.parse(ALICE), JID.parse(ROOM)) is None


def test_archiving_is_a_room_switch_with_a_service_default():
    """muc#roomconfig_enablearchiving turns the room's archive off and on: 170 on
    joining only while on, 171/170 when it changes, no stanza-id, no MAM feature
    and no archived message while off; default_archiving sets a new room's switch."""
    w = World()
    w.room_with((ALICE, "Alice"))
    form = w.iq(ALICE, "get", f"<query xmlns='{OWNER}'/>").toXml()
    assert "muc#roomconfig_enablearchiving" in form
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='{OWNER}'>"
                        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_enablearchiving'>"
                        "<value>0</value></field></x></query></iq>")
    assert "171" in codes(to(out, ALICE, "message")[0])
    assert "170" not in codes(w.join(BOB, "Bob")[-2])
    assert "urn:xmpp:sid:0" not in w.say(ALICE, "unarchived")[0].toXml()
    info = w.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>").toXml()
    assert "urn:xmpp:mam:2" not in info
    assert error(w.iq(BOB, "set", "<query xmlns='urn:xmpp:mam:2'/>")) == "service-unavailable"
    w.configure(ALICE, enablearchiving="1")
    w.say(ALICE, "archived")
    out = w.send(BOB, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><query xmlns='urn:xmpp:mam:2'/></iq>")
    assert len(out) == 2 and "archived" in out[0].toXml() and "unarchived" not in out[0].toXml()

    off = World(default_archiving=False)
    assert codes(off.join(ALICE, "Alice")[0]) == {"110", "201"}
    off.instant()
    assert "urn:xmpp:sid:0" not in off.say(ALICE, "one")[0].toXml()


def test_an_iq_to_an_occupant_is_passed_on_and_its_answer_comes_back():
    """§17.3: an iq from an occupant to another occupant's address goes to that
    occupant's real JID (a vCard to the bare JID) from the asker's room address with
    an id of the room's; the answer comes back to the asker from the occupant's room
    address with the asker's id.  A stray answer is dropped; one never given ends in
    <remote-server-timeout/>; non-occupants get <not-acceptable/>."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}/Bob' type='get' id='v1'>"
                        "<query xmlns='jabber:iq:version'/></iq>")
    assert len(out) == 1 and out[0]["to"] == BOB and out[0]["from"] == f"{ROOM}/Alice"
    assert "jabber:iq:version" in out[0].toXml()
    room_id = out[0]["id"]
    assert w.send(CAROL, f"<iq xmlns='jabber:client' to='{ROOM}/Alice' type='result' id='{room_id}'/>") == []
    back = w.send(BOB, f"<iq xmlns='jabber:client' to='{ROOM}/Alice' type='result' id='{room_id}'>"
                       "<query xmlns='jabber:iq:version'><name>b</name></query></iq>")
    assert len(back) == 1 and back[0]["to"] == ALICE and back[0]["from"] == f"{ROOM}/Bob"
    assert back[0]["id"] == "v1" and back[0]["type"] == "result" and "<name>b</name>" in back[0].toXml()
    assert w.send(BOB, f"<iq xmlns='jabber:client' to='{ROOM}/Alice' type='result' id='{room_id}'/>") == []

    vcard = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}/Bob' type='get' id='c1'>"
                          "<vCard xmlns='vcard-temp'/></iq>")
    assert vcard[0]["to"] == "bob@example.test"
    w.clock.advance(61)
    timed_out = [o for o in w.router.sent if o["to"] == ALICE and o.getAttribute("id") == "c1"]
    assert len(timed_out) == 1 and error(timed_out[0]) == "remote-server-timeout"
    assert error(w.iq(CAROL, "get", "<ping xmlns='urn:xmpp:ping'/>", to=f"{ROOM}/Bob")) == "not-acceptable"


def test_allowpm_limits_who_addresses_occupants_privately():
    """muc#roomconfig_allowpm: with 'moderators', a participant's private message and
    iq to another occupant are <forbidden/>, a moderator's pass; self-ping still works."""
    w = World()
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    assert w.configure(ALICE, allowpm="moderators")["type"] == "result"
    assert error(w.iq(BOB, "get", "<query xmlns='jabber:iq:version'/>", to=f"{ROOM}/Alice")) == "forbidden"
    assert error(w.say(BOB, "psst", to=f"{ROOM}/Alice", mtype="chat")[0]) == "forbidden"
    assert w.iq(BOB, "get", "<ping xmlns='urn:xmpp:ping'/>", to=f"{ROOM}/Bob")["type"] == "result"
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}/Bob' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert out[0]["to"] == BOB
    assert w.say(ALICE, "hi", to=f"{ROOM}/Bob", mtype="chat")[0]["to"] == BOB
    assert error(w.configure(ALICE, allowpm="everybody")) == "not-acceptable"


def test_presence_updates_past_the_rate_are_coalesced():
    """Presence updates share the occupant rate: past the burst they are held and the
    latest one is broadcast once the rate allows (never an error, which would take the
    client out); a nick change past the rate is refused with <resource-constraint/>;
    a held update dies with its occupant."""
    w = World(occupant_rate=1.0, occupant_burst=2)
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))

    def status(text: str, frm: str = BOB, nick: str = "Bob") -> list[domish.Element]:
        return w.send(frm, f"<presence xmlns='jabber:client' to='{ROOM}/{nick}'><status>{text}</status></presence>")

    assert len(status("one")) == 2 and len(status("two")) == 2
    assert status("three") == [] and status("four") == []
    before = len(w.router.sent)
    w.clock.advance(1)
    released = w.router.sent[before:]
    assert len(released) == 2 and all("four" in p.toXml() for p in released)
    assert {p["to"] for p in released} == {ALICE, BOB}
    w.clock.advance(10)
    assert len(w.router.sent) == before + 2
    w.clock.advance(10)  # full burst again
    assert len(status("a")) == 2 and len(status("b")) == 2
    assert error(status("c", nick="Robert")[0]) == "resource-constraint"
    status("held")
    w.send(BOB, f"<presence xmlns='jabber:client' to='{ROOM}/Bob' type='unavailable'/>")
    before = len(w.router.sent)
    w.clock.advance(5)
    assert len(w.router.sent) == before


def test_room_vcard_avatar_is_set_by_owners_and_announced():
    """XEP-0054 on the room's JID: anyone gets it, only owners set it, a too large one
    gets <policy-violation/>; its photo's SHA-1 is announced in presence from the room's
    bare JID (XEP-0153) to occupants and joiners, and in muc#roominfo_avatarhash
    (XEP-0486); a persistent room keeps it over a restart; an empty vCard removes it."""
    import base64
    import hashlib
    store = MemoryMucStore()
    w = World(store, vcard_max_size=2048)
    w.room_with((ALICE, "Alice"), (BOB, "Bob"))
    w.configure(ALICE, persistentroom="1")
    empty = w.iq(BOB, "get", "<vCard xmlns='vcard-temp'/>")
    assert empty["type"] == "result" and "vcard-temp" in empty.toXml()
    photo = b"\x89PNG fake image"
    vcard = (f"<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(photo).decode()}"
             "</BINVAL></PHOTO></vCard>")
    assert error(w.iq(BOB, "set", vcard)) == "forbidden"
    big = f"<vCard xmlns='vcard-temp'><PHOTO><BINVAL>{'A' * 4000}</BINVAL></PHOTO></vCard>"
    assert error(w.iq(ALICE, "set", big)) == "policy-violation"
    out = w.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'>{vcard}</iq>")
    digest = hashlib.sha1(photo).hexdigest()
    announced = [o for o in out if o.name == "presence"]
    assert {p["to"] for p in announced} == {ALICE, BOB} and all(p["from"] == ROOM for p in announced)
    assert all(f"<photo>{digest}</photo>" in p.toXml() and "vcard-temp:x:update" in p.toXml() for p in announced)
    assert base64.b64encode(photo).decode() in w.iq(CAROL, "get", "<vCard xmlns='vcard-temp'/>").toXml()
    info = w.iq(CAROL, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>").toXml()
    assert "muc#roominfo_avatarhash" in info and digest in info and "vcard-temp" in info
    joined = w.join(CAROL, "Carol")
    assert any(p["from"] == ROOM and digest in p.toXml() for p in joined)

    again = World(store)
    assert base64.b64encode(photo).decode() in again.iq(CAROL, "get", "<vCard xmlns='vcard-temp'/>").toXml()
    assert again.service.rooms["lobby"].avatar_hash == digest
    again.join(ALICE, "Alice")
    out = again.send(ALICE, f"<iq xmlns='jabber:client' to='{ROOM}' type='set'><vCard xmlns='vcard-temp'/></iq>")
    assert any(p.name == "presence" and "<photo/>" in p.toXml() for p in out)
    assert "muc#roominfo_avatarhash" not in again.iq(CAROL, "get",
                                                     "<query xmlns='http://jabber.org/protocol/disco#info'/>").toXml()
