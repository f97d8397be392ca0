"""XEP-0077 in-band registration against the real server: off by default, then on."""

from __future__ import annotations

from tests.e2e.conftest import USERS
from tests.e2e.harness import (
    CLIENT, SASL_NS, RawClient, check_login, expect_stream_error, sasl_condition, stanza_error, stream_error,
    to_text,
)

IQ_REGISTER = "http://jabber.org/features/iq-register"
REGISTER = "jabber:iq:register"


def iq(c: RawClient, body: str, ident: str):
    """Send an iq and return the reply with that id."""
    c.send(body)
    while True:
        el = c.next_element()
        if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == ident:
            return el


def register(c: RawClient, user: str, password: str, ident: str = "reg"):
    return iq(c, f"<iq type='set' id='{ident}'><query xmlns='{REGISTER}'><username>{user}</username>"
                 f"<password>{password}</password></query></iq>", ident)


def test_registration_is_off_by_default(server):
    """Without [registration] enabled = true no register feature is offered, and a
    registration iq before authentication is a <not-authorized/> stream error."""
    with RawClient(server.port, server.cert_path()) as c:
        c.open()
        features = c.starttls()
        assert features.find(f"{{{IQ_REGISTER}}}register") is None
        c.send(f"<iq type='get' id='r1'><query xmlns='{REGISTER}'/></iq>")
        assert stream_error(expect_stream_error(c)) == "not-authorized"


def test_in_band_registration_password_change_and_removal(own_server):
    """With registration on: the feature is offered after TLS; the fields are listed;
    an account is created (and a taken name gets <conflict/>); the new user logs in
    on the same stream, changes the password in-band, logs in with it from another
    client, then removes the account: the iq is answered and every session gets a
    <not-authorized/> stream error; the account is gone for good."""
    srv = own_server({"registration": {"enabled": True}}, users={"taken@example.test": "taken-secret"})
    with RawClient(srv.port, srv.cert_path()) as c:
        c.open()
        features = c.starttls()
        assert features.find(f"{{{IQ_REGISTER}}}register") is not None, to_text(features)
        fields = iq(c, f"<iq type='get' id='f1'><query xmlns='{REGISTER}'/></iq>", "f1")
        query = fields.find(f"{{{REGISTER}}}query")
        assert query.find(f"{{{REGISTER}}}username") is not None and query.find(f"{{{REGISTER}}}password") is not None
        taken = register(c, "taken", "whatever-pw", "r0")
        assert stanza_error(taken) == "conflict" and "whatever-pw" not in to_text(taken)
        assert register(c, "Newbie", "first-password", "r1").get("type") == "result"
        assert c.auth_plain("newbie", "first-password").tag == f"{{{SASL_NS}}}success"
        c.open()
        c.bind("one")
        changed = iq(c, f"<iq type='set' id='pw' to='example.test'><query xmlns='{REGISTER}'>"
                        f"<username>newbie</username><password>second-password</password></query></iq>", "pw")
        assert changed.get("type") == "result", to_text(changed)
        with RawClient(srv.port, srv.cert_path()) as other:
            other.login("newbie", "second-password", resource="two")
            gone = iq(other, f"<iq type='set' id='rm'><query xmlns='{REGISTER}'><remove/></query></iq>", "rm")
            assert gone.get("type") == "result", to_text(gone)
            assert stream_error(expect_stream_error(other)) == "not-authorized"
        assert stream_error(expect_stream_error(c)) == "not-authorized"
    with RawClient(srv.port, srv.cert_path()) as c:
        c.open()
        c.starttls()
        assert sasl_condition(c.auth_plain("newbie", "second-password")) == "not-authorized"
    check_login(srv, "taken@example.test/ok", "taken-secret")
    srv.wait_log(r"Registered newbie@example\.test in-band from 127\.0\.0\.1")


def test_registered_user_sees_registered_on_shared_server(server):
    """Even with registration off, a logged-in user learns they are <registered/>."""
    with RawClient(server.port, server.cert_path()) as c:
        c.login("wendy", USERS["wendy@example.test"], resource="reg")
        reply = iq(c, f"<iq type='get' id='g1' to='example.test'><query xmlns='{REGISTER}'/></iq>", "g1")
        query = reply.find(f"{{{REGISTER}}}query")
        assert query.find(f"{{{REGISTER}}}registered") is not None
        assert query.find(f"{{{REGISTER}}}username").text == "wendy"
