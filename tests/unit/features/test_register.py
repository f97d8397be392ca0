"""XEP-0077 in-band registration, password change and account removal
(fedxmpp.features.register)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.words.xish import domish

from fedxmpp.c2s.negotiation import PreAuthRequest
from fedxmpp.features.register import STREAM_FEATURE, RateLimit
from fedxmpp.storage.credentials import verify_password
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.features.world import World, condition, payload, xml

ON = {"registration": {"enabled": True, "max_per_ip": 2, "period": 60.0}}


def pre_auth(w: World, iq_xml: str, peer: str = "192.0.2.1") -> tuple[bool, list[domish.Element]]:
    sent: list[domish.Element] = []
    handled = w.hooks.fire("c2s/pre-auth-iq", PreAuthRequest(xml(iq_xml), "example.test", peer, sent.append))
    return handled, sent


def register_iq(user: str, password: str, id: str = "r1") -> str:
    return (f"<iq type='set' id='{id}'><query xmlns='jabber:iq:register'>"
            f"<username>{user}</username><password>{password}</password></query></iq>")


def test_disabled_by_default_offers_nothing():
    """Off: no stream feature, and a pre-auth iq is left to the stream (not-authorized)."""
    w = World()
    features = domish.Element((ns.STREAMS, "features"))
    w.hooks.fire("c2s/pre-auth-features", features)
    assert list(features.elements()) == []
    handled, sent = pre_auth(w, "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
    assert (handled, sent) == (False, [])


def test_enabled_advertises_and_lists_fields():
    """On: the stream feature is offered and a get returns username and password fields."""
    w = World(**ON)
    features = domish.Element((ns.STREAMS, "features"))
    w.hooks.fire("c2s/pre-auth-features", features)
    assert [(f.uri, f.name) for f in features.elements()] == [(STREAM_FEATURE, "register")]
    handled, (reply,) = pre_auth(w, "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
    assert handled and (reply["type"], reply["id"]) == ("result", "g")
    assert [c.name for c in payload(reply).elements()] == ["instructions", "username", "password"]


def test_registration_creates_a_prepared_account():
    """A set creates the account, the username prepared (case-mapped)."""
    w = World(**ON)
    _, (reply,) = pre_auth(w, register_iq("NewUser", "a good password"))
    assert reply["type"] == "result"
    creds = w.storage.accounts.accounts[("newuser", "example.test")]
    assert verify_password(creds["sha-256"], "a good password")


def test_registration_errors_never_repeat_the_password():
    """Taken name: <conflict/>; missing or empty field or invalid name: <not-acceptable/>;
    no error reply carries the request (with its password) back."""
    w = World(**ON)
    w.account("taken@example.test")
    cases = [
        (register_iq("taken", "pw-secret-1"), "conflict"),
        (register_iq("", "pw-secret-2"), "not-acceptable"),
        (register_iq("someone", ""), "not-acceptable"),
        (register_iq("bad@name", "pw-secret-3"), "not-acceptable"),
    ]
    for iq, expected in cases:
        _, (reply,) = pre_auth(w, iq)
        assert condition(reply) == expected, iq
        assert "pw-secret" not in reply.toXml()
        assert [c.name for c in reply.elements()] == ["error"]
    assert set(w.storage.accounts.accounts) == {("taken", "example.test")}


def test_registrations_are_rate_limited_per_address():
    """max_per_ip accounts per address per period: the next is <policy-violation/>;
    failed attempts do not count; other addresses are not affected; the window passes."""
    w = World(**ON)
    w.account("taken@example.test")
    pre_auth(w, register_iq("taken", "password-x"))  # a conflict: not counted
    for name in ("one", "two"):
        assert pre_auth(w, register_iq(name, "password-x"))[1][0]["type"] == "result"
    assert condition(pre_auth(w, register_iq("three", "password-x"))[1][0]) == "policy-violation"
    assert pre_auth(w, register_iq("four", "password-x"), peer="198.51.100.7")[1][0]["type"] == "result"
    w.clock.advance(61)
    assert pre_auth(w, register_iq("five", "password-x"))[1][0]["type"] == "result"


def test_rate_limit_table_is_bounded():
    """The table of addresses never holds more than max_addresses entries."""
    limit = RateLimit(Clock(), limit=1, period=60, max_addresses=3)
    for i in range(10):
        assert limit.take(f"10.0.0.{i}")
    assert len(limit) == 3
    assert not limit.take("10.0.0.9")


def test_authenticated_user_sees_registered():
    """A logged-in user asking their server gets <registered/> and their username."""
    w = World()
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "get", "<query xmlns='jabber:iq:register'/>", to="example.test")
    assert [(c.name, str(c)) for c in payload(reply).elements()] == [("registered", ""), ("username", "alice")]


def test_password_change():
    """A user changes their own password; an empty one or another name is refused."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    q = "<query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query>"
    assert w.iq(a, "set", q.format("alice", "new password"), to="example.test")["type"] == "result"
    assert verify_password(w.storage.accounts.accounts[("alice", "example.test")]["sha-256"], "new password")
    empty = w.iq(a, "set", q.format("alice", ""), to="example.test", id="q2")
    assert condition(empty) == "not-acceptable"
    other = w.iq(a, "set", q.format("bob", "hijack-pass"), to="example.test", id="q3")
    assert condition(other) == "not-allowed" and "hijack-pass" not in other.toXml()


def test_account_removal_answers_then_closes_every_session():
    """<remove/>: the account is deleted, the iq answered, every session closed with
    <not-authorized/>, and "account/removed" fired."""
    w = World()
    w.account("alice@example.test")
    removed = []
    w.hooks.add("account/removed", removed.append)
    a1, a2 = w.login("alice@example.test/a"), w.login("alice@example.test/b")
    reply = w.iq(a1, "set", "<query xmlns='jabber:iq:register'><remove/></query>")
    assert reply["type"] == "result"
    assert ("alice", "example.test") not in w.storage.accounts.accounts
    assert [e.condition for e in a1.closed_with] == ["not-authorized"]
    assert [e.condition for e in a2.closed_with] == ["not-authorized"]
    assert removed == [JID.parse("alice@example.test")]


def test_remove_with_other_elements_is_bad_request():
    """<remove/> must be alone (XEP-0077 §3.2)."""
    w = World()
    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    reply = w.iq(a, "set", "<query xmlns='jabber:iq:register'><remove/><username>alice</username></query>")
    assert condition(reply) == "bad-request"
    assert ("alice", "example.test") in w.storage.accounts.accounts


def test_other_domains_users_cannot_manage_accounts_here():
    """A user of another domain asking this one gets <service-unavailable/>."""
    w = World()
    o = w.login("oscar@other.test/o")
    reply = w.iq(o, "set", "<query xmlns='jabber:iq:register'><remove/></query>", to="example.test")
    assert condition(reply) == "service-unavailable"


def _error_text(el: domish.Element) -> str:
    for c in el.elements():
        if c.name == "error":
            return next((str(x) for x in c.elements() if x.name == "text"), "")
    return ""


def test_a_password_shorter_than_the_minimum_is_not_acceptable():
    """[auth] min_password_length (default 8) applies to in-band registration and
    password change: <not-acceptable/> with a text naming the minimum, and no
    account is created or changed.  Counted in characters, not bytes."""
    w = World(**ON)
    _, (reply,) = pre_auth(w, register_iq("shorty", "seven77"))
    assert condition(reply) == "not-acceptable"
    assert _error_text(reply) == "Password too short: at least 8 characters are required"
    assert ("shorty", "example.test") not in w.storage.accounts.accounts
    assert pre_auth(w, register_iq("umlaut", "äöüäöüäö"), peer="192.0.2.9")[1][0]["type"] == "result"

    w.account("alice@example.test")
    a = w.login("alice@example.test/a")
    q = "<query xmlns='jabber:iq:register'><username>alice</username><password>{}</password></query>"
    before = dict(w.storage.accounts.accounts[("alice", "example.test")])
    short = w.iq(a, "set", q.format("abc"), to="example.test", id="s1")
    assert condition(short) == "not-acceptable" and "at least 8" in _error_text(short)
    assert w.storage.accounts.accounts[("alice", "example.test")] == before

    lax = World(auth={"min_password_length": 3}, **ON)
    assert pre_auth(lax, register_iq("shorty", "abc"))[1][0]["type"] == "result"
