"""XEP-0313 message archives (fedxmpp.features.mam)."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from fedxmpp.features import mam
from fedxmpp.storage import ArchivePrefs, StorageError
from fedxmpp.xml.jid import JID
from tests.unit.features.world import NOW, World, condition, payload, xml

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"


def setup(**archive):
    w = World(archive=archive) if archive else World()
    w.account("alice@example.test")
    w.account("bob@example.test")
    a = w.login("alice@example.test/a")
    b = w.login("bob@example.test/b")
    return w, a, b


def say(w: World, frm, to: str, body: str, extra: str = "", mtype: str = "chat") -> None:
    w.client_send(frm, xml(f"<message to='{to}' type='{mtype}'><body>{body}</body>{extra}</message>"))


def stanza_ids(el) -> list[tuple[str, str]]:
    return [(c["by"], c["id"]) for c in el.elements() if c.uri == SID and c.name == "stanza-id"]


def archived(w: World, user: str) -> list[str]:
    """Bodies in *user*'s archive, in order (after the write queue has run)."""
    w.clock.advance(1)
    j = JID.parse(user)
    out = []
    for _, e in w.storage.archive.archive(j.user, j.host):
        out.append(e.stanza.split("<body>")[1].split("</body>")[0] if "<body>" in e.stanza else e.stanza)
    return out


def query(w: World, session, inner: str = "", queryid: str = "q", id: str = "mam1"):
    """Run a query; (result messages, the iq answer)."""
    before = len(session.sent)
    el = xml(f"<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{queryid}'>{inner}</query></iq>")
    w.client_send(session, el)
    w.clock.advance(1)
    got = session.sent[before:]
    answer = [s for s in got if s.name == "iq" and s.getAttribute("id") == id]
    assert answer, [s.toXml() for s in got]
    return [s for s in got if s.name == "message"], answer[-1]


def form(**fields) -> str:
    out = f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out += f"<field var='{var.replace('_', '-')}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
    return out + "</x>"


def rsm(**kw) -> str:
    return f"<set xmlns='{RSM}'>" + "".join(f"<{k}>{v}</{k}>" if v is not None else f"<{k}/>"
                                           for k, v in kw.items()) + "</set>"


def result_bodies(messages) -> list[str]:
    out = []
    for m in messages:
        result = payload(m)
        forwarded = next(result.elements())
        inner = [c for c in forwarded.elements() if c.name == "message"][0]
        out.append(str(next(c for c in inner.elements() if c.name == "body")))
    return out


def fin_set(answer) -> dict:
    fin = payload(answer)
    s = next(fin.elements())
    values = {c.name: str(c) for c in s.elements()}
    first = next((c for c in s.elements() if c.name == "first"), None)
    values["index"] = first.getAttribute("index") if first is not None else None
    values["complete"] = fin.getAttribute("complete")
    return values


# -- archiving ----------------------------------------------------------------------------------


def test_both_sides_are_archived_and_the_recipient_gets_a_stanza_id():
    """A message between two local users lands in both archives; the delivered copy
    carries <stanza-id by=recipient/> with the recipient's archive id, and no id of
    the sender's archive."""
    w, a, b = setup()
    say(w, a, "bob@example.test", "hello")
    (delivered,) = b.sent
    ((by, archive_id),) = stanza_ids(delivered)
    assert by == "bob@example.test"
    assert archived(w, "alice@example.test") == ["hello"] and archived(w, "bob@example.test") == ["hello"]
    (_, bob_entry), = w.storage.archive.archive("bob", "example.test")
    assert bob_entry.archive_id == archive_id and not bob_entry.outgoing
    assert "stanza-id" not in bob_entry.stanza and bob_entry.with_jid == "alice@example.test"
    (_, alice_entry), = w.storage.archive.archive("alice", "example.test")
    assert alice_entry.outgoing and (alice_entry.with_jid, alice_entry.with_resource) == ("bob@example.test", "")


def test_forged_stanza_ids_are_removed():
    """A stanza-id claiming to be by the recipient is removed from what arrives (even
    when the message is not archived); one by someone else is kept."""
    w, a, b = setup(default_prefs="never")
    say(w, a, "bob@example.test", "x", "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.test' id='forged'/>"
                                       "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example' id='ok'/>")
    assert stanza_ids(b.sent[0]) == [("room@muc.example", "ok")]


def test_message_to_oneself_is_archived_once():
    """A note to one's own bare JID is one archive entry, not two."""
    w, a, b = setup()
    say(w, a, "alice@example.test", "note")
    assert archived(w, "alice@example.test") == ["note"]


@pytest.mark.parametrize("message, kept", [
    ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
    ("<message type='headline'><body>news</body></message>", False),
    ("<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/></message>", True),
    ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='1'/></message>", True),
    ("<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>", True),
    ("<message><subject>subject only</subject></message>", True),
    ("<message type='chat'><sent xmlns='urn:xmpp:carbons:2'/><body>x</body></message>", False),
])
def test_what_is_archived(message, kept):
    """Bodies and conversation payloads are kept; chat states alone, headlines,
    no-store hints and carbons are not."""
    w, a, b = setup()
    el = xml(message)
    el["to"] = "bob@example.test/b"
    w.client_send(a, el)
    assert (len(archived(w, "alice@example.test")) == 1) is kept
    assert (len(archived(w, "bob@example.test")) == 1) is kept
    assert bool(stanza_ids(b.sent[0])) is kept


def test_offline_messages_are_archived_with_their_stanza_id():
    """A message kept offline is archived too, and is stored with its stanza-id."""
    w, a, b = setup()
    w.logout(b)
    say(w, a, "bob@example.test", "later")
    (stored,) = w.storage.offline.messages[("bob", "example.test")]
    assert "urn:xmpp:sid:0" in stored and "by='bob@example.test'" in stored
    assert archived(w, "bob@example.test") == ["later"]


# -- preferences --------------------------------------------------------------------------------


def test_prefs_default_from_config_and_round_trip():
    """Without stored preferences the configured default is answered; a set is
    stored, answered and applied."""
    w, a, b = setup(default_prefs="roster")
    got = payload(w.iq(a, "get", f"<prefs xmlns='{MAM}'/>"))
    assert got["default"] == "roster"
    reply = w.iq(a, "set", f"<prefs xmlns='{MAM}' default='always'><always/><never><jid>eve@example.test</jid>"
                          "</never></prefs>", id="q2")
    assert payload(reply)["default"] == "always"
    assert w.storage.archive.prefs[("alice", "example.test")] == ArchivePrefs(
        "always", frozenset(), frozenset({"eve@example.test"}))
    eve = w.login("eve@example.test/e")
    say(w, eve, "alice@example.test/a", "unseen")
    say(w, b, "alice@example.test/a", "seen")
    assert archived(w, "alice@example.test") == ["seen"]


@pytest.mark.parametrize("text, error", [
    (f"<prefs xmlns='{MAM}' default='sometimes'/>", "bad-request"),
    (f"<prefs xmlns='{MAM}' default='always'><never><jid>@@</jid></never></prefs>", "jid-malformed"),
])
def test_bad_prefs_are_refused(text, error):
    """An unknown default or a JID that is not one is refused."""
    w, a, b = setup()
    assert condition(w.iq(a, "set", text)) == error


def test_archives_belong_to_their_owner():
    """Another user's preferences and archive are <forbidden/>."""
    w, a, b = setup()
    assert condition(w.iq(b, "get", f"<prefs xmlns='{MAM}'/>", to="alice@example.test")) == "forbidden"
    assert condition(w.iq(b, "set", f"<query xmlns='{MAM}'/>", to="alice@example.test", id="q2")) == "forbidden"


def test_never_means_no_archive_and_no_stanza_id():
    """With default 'never', nothing is archived and nothing is stamped."""
    w, a, b = setup(default_prefs="never")
    say(w, a, "bob@example.test", "secret")
    assert stanza_ids(b.sent[0]) == []
    assert archived(w, "alice@example.test") == [] and archived(w, "bob@example.test") == []


def test_roster_default_archives_contacts_only():
    """'roster': a contact's message is archived, a stranger's is not; a JID in the
    'always' list is archived anyway."""
    w, a, b = setup(default_prefs="roster")
    w.subscribe("alice@example.test", "bob@example.test", "both")
    stranger = w.login("stranger@example.test/s")
    friend = w.login("friend@example.test/f")
    w.iq(a, "set", f"<prefs xmlns='{MAM}' default='roster'><always><jid>friend@example.test</jid></always></prefs>")
    a.sent.clear()
    say(w, b, "alice@example.test/a", "contact")
    say(w, stranger, "alice@example.test/a", "stranger")
    say(w, friend, "alice@example.test/a", "listed")
    assert archived(w, "alice@example.test") == ["contact", "listed"]
    assert [bool(stanza_ids(m)) for m in a.sent] == [True, False, True]


def test_messages_wait_for_preferences_in_order():
    """A message for a user whose preferences are not in memory waits for them to be
    read (one read), then is archived and delivered; later ones keep their order,
    and delivery is not otherwise delayed."""
    w = World()
    w.account("alice@example.test")
    gate: defer.Deferred[None] = defer.Deferred()
    real = w.storage.archive.get_prefs
    reads = []

    async def slow(user, domain):
        reads.append(user)
        await gate
        return await real(user, domain)

    w.storage.archive.get_prefs = slow
    b = w.login("bob@example.test/b")
    reads.clear()  # bob's own preferences, read at login
    a = w.login("alice@example.test/a")
    for body in ("one", "two", "three"):
        say(w, b, "alice@example.test/a", body)
    assert a.sent == [] and reads == ["alice"]
    gate.callback(None)
    assert [str(next(m.elements())) for m in a.sent] == ["one", "two", "three"]
    assert all(stanza_ids(m) for m in a.sent)
    assert archived(w, "alice@example.test") == ["one", "two", "three"]


# -- the write queue ----------------------------------------------------------------------------


def test_delivery_never_waits_for_the_archive_write():
    """Messages are delivered with their stanza-id while their archive write has
    not even started; the rows are written in one batch afterwards."""
    w, a, b = setup()
    for i in range(30):
        say(w, a, "bob@example.test", f"m{i}")
    assert len(b.sent) == 30 and all(stanza_ids(m) for m in b.sent)
    assert w.storage.archive.batches == []
    w.clock.advance(mam.FLUSH_DELAY)
    assert w.storage.archive.batches == [60]


def test_a_query_waits_for_pending_writes():
    """A query sent right after a message finds it: the queue is written first."""
    w, a, b = setup()
    say(w, a, "bob@example.test", "just now")
    messages, answer = query(w, b)
    assert result_bodies(messages) == ["just now"] and answer["type"] == "result"


def test_a_queue_over_its_limit_still_archives_every_message():
    """Past the queue's limit nothing is dropped: every message is delivered with
    its stanza-id and every row is written (the senders are slowed instead)."""
    w, a, b = setup()
    archive = next(f for f in _features(w) if isinstance(f, mam.ArchiveQueue))
    archive.limit = 2
    for i in range(3):
        say(w, a, "bob@example.test", f"m{i}")
    assert len(b.sent) == 3 and all(stanza_ids(m) for m in b.sent)
    w.clock.advance(mam.FLUSH_DELAY)
    assert archived(w, "bob@example.test") == ["m0", "m1", "m2"]


def test_failed_write_is_logged_and_the_server_goes_on():
    """A batch the database refuses is dropped; the next batch is written."""
    w, a, b = setup()
    w.storage.archive.broken = StorageError("disk full")
    say(w, a, "bob@example.test", "lost")
    w.clock.advance(1)
    w.storage.archive.broken = None
    say(w, a, "bob@example.test", "kept")
    assert archived(w, "bob@example.test") == ["kept"]
    assert len(b.sent) == 2


def _features(w: World):
    """The queues that the archive feature put on the hooks (for tuning in tests)."""
    for handlers in w.hooks._handlers.values():
        for entry in handlers:
            owner = getattr(entry.handler, "__self__", None)
            if isinstance(owner, mam.Archive):
                yield owner.queue
                return


# -- queries ------------------------------------------------------------------------------------


def fill(w: World, a, b, n: int) -> None:
    for i in range(n):
        w.clock.advance(1)
        say(w, a if i % 2 == 0 else b, "bob@example.test" if i % 2 == 0 else "alice@example.test/a", f"m{i}")


def test_results_go_to_the_asking_resource_with_queryid_and_delay():
    """Each result is <message><result queryid id><forwarded><delay/><message/>, sent
    to the resource that asked, followed by the iq result with <fin/>."""
    w, a, b = setup()
    a2 = w.login("alice@example.test/second")
    fill(w, a, b, 2)
    a2.sent.clear()
    messages, answer = query(w, a, queryid="f27")
    assert a2.sent == []
    assert result_bodies(messages) == ["m0", "m1"]
    result = payload(messages[0])
    assert (result.uri, result["queryid"]) == (MAM, "f27")
    delay = next(next(result.elements()).elements())
    assert delay["stamp"] == "2023-11-14T22:13:21Z"
    ids = [payload(m)["id"] for m in messages]
    delivered = [m for m in a.sent if m.name == "message" and m.getAttribute("type") == "chat"]
    assert stanza_ids(delivered[0]) == [("alice@example.test", ids[1])]
    assert fin_set(answer) == {"first": ids[0], "last": ids[1], "count": "2", "index": "0", "complete": "true"}


def test_paging_forward_and_backward():
    """RSM: pages of 10 forward with <after/>, and backward from the last page with
    <before/>, each in order; 'complete' only at the end of the direction."""
    w, a, b = setup()
    fill(w, a, b, 25)
    seen, after = [], None
    while True:
        messages, answer = query(w, a, rsm(max=10, after=after) if after else rsm(max=10))
        seen += result_bodies(messages)
        got = fin_set(answer)
        if got["complete"] == "true":
            break
        after = got["last"]
    assert seen == [f"m{i}" for i in range(25)]
    back, before = [], ""
    while True:
        messages, answer = query(w, a, rsm(max=10, before=before or None))
        back = result_bodies(messages) + back
        got = fin_set(answer)
        if got["complete"] == "true":
            break
        before = got["first"]
    assert back == seen


def test_filters_with_start_end_and_ids():
    """'with' a bare JID matches the resources; start/end bound by time; after-id,
    before-id and ids pick messages by id."""
    w, a, b = setup()
    carol = w.login("carol@example.test/c")
    fill(w, a, b, 6)
    say(w, carol, "alice@example.test/a", "from carol")
    messages, _ = query(w, a, form(**{"with": "carol@example.test"}))
    assert result_bodies(messages) == ["from carol"]
    messages, _ = query(w, a, form(**{"with": "bob@example.test/b"}))
    assert result_bodies(messages) == ["m1", "m3", "m5"]
    messages, _ = query(w, a, form(start="2023-11-14T22:13:22Z", end="2023-11-14T23:13:23+01:00"))
    assert result_bodies(messages) == ["m1", "m2"]
    everything, _ = query(w, a)
    ids = [payload(m)["id"] for m in everything]
    messages, _ = query(w, a, form(after_id=ids[1], before_id=ids[4]))
    assert result_bodies(messages) == ["m2", "m3"]
    messages, _ = query(w, a, form(ids=[ids[5], ids[0]]))
    assert result_bodies(messages) == ["m0", "m5"]


def test_flip_page_and_index_and_max_zero():
    """<flip-page/> sends the page newest first; <index/> starts there; <max>0</max>
    answers the count alone; a page larger than max_page is cut to it."""
    w, a, b = setup(max_page=4)
    fill(w, a, b, 6)
    messages, _ = query(w, a, rsm(max=3) + f"<flip-page xmlns='{MAM}'/>")
    assert result_bodies(messages) == ["m2", "m1", "m0"]
    messages, answer = query(w, a, rsm(max=2, index=3))
    assert result_bodies(messages) == ["m3", "m4"] and fin_set(answer)["index"] == "3"
    messages, answer = query(w, a, rsm(max=0))
    assert messages == [] and fin_set(answer)["count"] == "6"
    messages, answer = query(w, a, rsm(max=100))
    assert len(messages) == 4 and fin_set(answer)["complete"] is None


@pytest.mark.parametrize("inner, error", [
    (rsm(max=5, after="AAYKJBgeQABnnC8-uA8"), "item-not-found"),
    (form(after_id="nope"), "item-not-found"),
    (form(**{"{urn:example}fulltext": "x"}), "feature-not-implemented"),
    (form(start="yesterday"), "bad-request"),
    (rsm(max="lots"), "bad-request"),
    (rsm(after="x", before="y"), "bad-request"),
])
def test_bad_queries(inner, error):
    """Unknown ids, unknown fields, bad dates and bad RSM are answered with the error
    XEP-0313 names."""
    w, a, b = setup()
    fill(w, a, b, 2)
    messages, answer = query(w, a, inner)
    assert messages == [] and condition(answer) == error


def test_query_form_and_metadata():
    """A get of <query/> lists the fields (FORM_TYPE first); <metadata/> names the first
    and the last message."""
    w, a, b = setup()
    reply = w.iq(a, "get", f"<query xmlns='{MAM}'/>")
    x = next(payload(reply).elements())
    assert [f["var"] for f in x.elements()] == ["FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"]
    assert [c.name for c in payload(w.iq(a, "get", f"<metadata xmlns='{MAM}'/>", id="q2")).elements()] == []
    fill(w, a, b, 3)
    _, everything = None, query(w, a)[0]
    ids = [payload(m)["id"] for m in everything]
    w.client_send(a, xml(f"<iq type='get' id='md'><metadata xmlns='{MAM}'/></iq>"))
    w.clock.advance(1)
    metadata = payload(a.sent[-1])
    assert [(c.name, c["id"]) for c in metadata.elements()] == [("start", ids[0]), ("end", ids[-1])]


def test_disco_features():
    """The account advertises mam:2, its extended fields and stanza ids."""
    w = World()
    assert {MAM, f"{MAM}#extended", SID} <= w.ctx.disco.account_features


# -- retention ----------------------------------------------------------------------------------


def test_old_messages_are_purged_on_the_clock():
    """Every hour, messages older than retention_days are deleted; newer ones stay."""
    w, a, b = setup(retention_days=1)
    say(w, a, "bob@example.test", "old")
    w.clock.advance(86400 - 1800)
    say(w, a, "bob@example.test", "new")
    w.clock.advance(1)
    assert archived(w, "bob@example.test") == ["old", "new"]
    w.clock.pump([mam.PURGE_INTERVAL] * 2)
    assert archived(w, "bob@example.test") == ["new"]


def test_datetime_parsing_and_stamps():
    """XEP-0082 dates with fractions and offsets; stamps with microseconds only when
    there are some."""
    assert mam.parse_datetime("2023-11-14T22:13:20Z") == int(NOW) * 1_000_000
    assert mam.parse_datetime("2023-11-14T23:13:20.5+01:00") == int(NOW) * 1_000_000 + 500_000
    assert mam.stamp(int(NOW) * 1_000_000) == "2023-11-14T22:13:20Z"
    assert mam.stamp(int(NOW) * 1_000_000 + 7) == "2023-11-14T22:13:20.000007Z"
    with pytest.raises(ValueError):
        mam.parse_datetime("2023-13-14T22:13:20Z")


def test_a_hurried_queue_writes_without_its_batching_delay():
    """"storage/hurry" (a client waits for an ack) has the queued rows written at
    the next turn of the reactor instead of FLUSH_DELAY later."""
    w, a, b = setup()
    say(w, a, "bob@example.test", "now")
    w.hooks.fire("storage/hurry")
    w.clock.advance(0)
    assert w.storage.archive.batches == [2]
