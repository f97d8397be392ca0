"""Deleting an account while its user is online: `fedxmpp deluser` reaches the
running server through its admin socket, which ends the sessions and tells the
contacts; without a running server it deletes straight in the database."""

from __future__ import annotations

import os
import stat

from tests.e2e.harness import CLIENT, RawClient, expect_stream_error, stream_error, to_text

USERS = {"gone@example.test": "gone-secret", "stays@example.test": "stays-secret"}


def _until(client: RawClient, wanted, what: str):
    """Read elements until *wanted* (a predicate) accepts one; return it."""
    seen = []
    while True:
        el = client.next_element()
        seen.append(el)
        if wanted(el):
            return el


def _presence(frm_prefix: str, ptype: str | None):
    def match(el) -> bool:
        return (el.tag == f"{{{CLIENT}}}presence" and el.get("from", "").startswith(frm_prefix)
                and el.get("type") == ptype)
    return match


def _befriend(gone: RawClient, stays: RawClient) -> None:
    """Both fetch their roster and become available, then subscribe to each other."""
    for c in (gone, stays):
        c.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        c.send("<presence/>")
        c.ping_server()
    gone.send("<presence to='stays@example.test' type='subscribe'/>")
    _until(stays, _presence("gone@example.test", "subscribe"), "subscribe")
    stays.send("<presence to='gone@example.test' type='subscribed'/>")
    stays.send("<presence to='gone@example.test' type='subscribe'/>")
    _until(gone, _presence("stays@example.test", "subscribe"), "subscribe")
    gone.send("<presence to='stays@example.test' type='subscribed'/>")
    _until(stays, _presence("gone@example.test/a", None), "gone available")
    stays.ping_server()
    gone.ping_server()


def test_deluser_ends_the_sessions_and_tells_the_contacts(own_server):
    """With the user online, `fedxmpp deluser` answers that the running server ended
    one session; that session gets a <not-authorized/> stream error; the contact
    gets unavailable, unsubscribe and unsubscribed from the deleted user (RFC 6121
    §2.5.2) and the account cannot log in again.  The admin socket is mode 0600."""
    srv = own_server(users=USERS)
    sock = srv.data_dir / "admin.sock"
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    with RawClient(srv.port, srv.cert_path()) as gone, RawClient(srv.port, srv.cert_path()) as stays:
        gone.login("gone", USERS["gone@example.test"], "a")
        stays.login("stays", USERS["stays@example.test"], "b")
        _befriend(gone, stays)

        done = srv.cli("deluser", "gone@example.test")
        assert "ended its 1 session" in done.stdout, done.stdout

        assert stream_error(expect_stream_error(gone)) == "not-authorized"
        told = set()
        while told != {"unavailable", "unsubscribe", "unsubscribed"}:
            el = stays.next_element()
            if el.tag == f"{{{CLIENT}}}presence" and el.get("from", "").startswith("gone@example.test"):
                assert el.get("type") in ("unavailable", "unsubscribe", "unsubscribed"), to_text(el)
                told.add(el.get("type"))
    with RawClient(srv.port, srv.cert_path()) as again:
        again.open()
        again.starttls()
        outcome = again.auth_plain("gone", USERS["gone@example.test"])
        assert outcome.tag.endswith("failure"), to_text(outcome)


def test_deluser_without_a_running_server_and_after_a_crash(own_server):
    """Without a server the account is deleted in the database.  A server killed
    with SIGKILL leaves its socket behind: the command still works (it falls back
    to the database), and the next start takes the socket over."""
    srv = own_server(users=USERS)
    srv.kill()
    assert (srv.data_dir / "admin.sock").exists()
    done = srv.cli("deluser", "stays@example.test")
    assert done.stdout.strip() == "deleted stays@example.test"
    srv.start()
    done = srv.cli("deluser", "gone@example.test")
    assert "ended its 0 session" in done.stdout, done.stdout
    failed = srv.cli("deluser", "stays@example.test", check=False)
    assert failed.returncode != 0 and "no account stays@example.test" in failed.stderr, failed.stderr
