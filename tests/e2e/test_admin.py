"""The admin commands that ask the running server through its admin socket:
`fedxmpp status`, `connected`, `kick`, and `--version`."""

from __future__ import annotations

import os
import re
import subprocess

import fedxmpp
from tests.e2e.harness import (
    FEDXMPP, STREAM_ERRORS, RawClient, expect_stream_error, server_env, stream_error,
)

USERS = {"ann@example.test": "ann-password", "ben@example.test": "ben-password",
         "cy@other.test": "cy-password"}
SM = "urn:xmpp:sm:3"


def _enable_sm(client: RawClient) -> None:
    client.send(f"<enable xmlns='{SM}' resume='true'/>")
    while True:
        el = client.next_element()
        if el.tag == f"{{{SM}}}enabled":
            assert el.get("resume") in ("true", "1"), el.attrib
            return


def _status(srv) -> dict[str, str]:
    out = srv.cli("status").stdout
    lines = out.splitlines()
    assert lines[0] == f"fedxmpp {fedxmpp.__version__}, up " + lines[0].rsplit("up ", 1)[1], out
    return {"c2s": lines[1], "s2s": lines[2], "components": lines[3]}


def test_status_and_connected_show_the_sessions(own_server):
    """`status` counts bound and hibernating client sessions; `connected` lists one
    line per bound session with its full JID, the client's address, when it bound,
    its TLS version and stream management state, a hibernating one included."""
    srv = own_server(users=USERS)
    # A server started by root says so (these tests may run as root or not).
    if os.geteuid() == 0:
        srv.wait_log(r"fedxmpp runs as root: set \[server\] user, or run it as an unprivileged user")
    status = _status(srv)  # after the start-up lines
    assert ("fedxmpp runs as root" in srv.log_text()) == (os.geteuid() == 0), srv.log_tail()
    assert status["c2s"] == "c2s sessions: 0 bound, 0 hibernating (stream management)"
    assert status["s2s"] == "s2s streams: 0 incoming, 0 outgoing"
    assert status["components"] == "components: 0 connected"
    assert srv.cli("connected").stdout == ""

    ann = RawClient(srv.port, srv.cert_path())
    phone = RawClient(srv.tls_port, srv.cert_path(), direct_tls=True)
    cy = RawClient(srv.port, srv.cert_path("other.test"), domain="other.test")
    with ann, phone, cy:
        ann.login("ann", USERS["ann@example.test"], "desk")
        phone.login("ben", USERS["ben@example.test"], "phone")
        _enable_sm(phone)
        cy.login("cy", USERS["cy@other.test"], "laptop")
        for c in (ann, phone, cy):
            c.ping_server()
        assert _status(srv)["c2s"] == "c2s sessions: 3 bound, 0 hibernating (stream management)"
        lines = srv.cli("connected").stdout.splitlines()
        assert [line.split()[0] for line in lines] == [
            "ann@example.test/desk", "ben@example.test/phone", "cy@other.test/laptop"]
        pattern = r"^(\S+) 127\.0\.0\.1:(\d+) since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ tls=(TLSv1\.[23]) sm=(\S+)$"
        parsed = {}
        for line in lines:
            m = re.match(pattern, line)
            assert m, line
            parsed[m.group(1)] = (int(m.group(2)), m.group(4))
        assert parsed["ann@example.test/desk"] == (ann.t.sock.getsockname()[1], "off")
        assert parsed["ben@example.test/phone"] == (phone.t.sock.getsockname()[1], "resumable")

        # The phone's connection dies: its session hibernates, still listed.
        phone.t.sock.close()
        srv.wait_log(r"Hibernating ben@example\.test/phone")
        assert _status(srv)["c2s"] == "c2s sessions: 2 bound, 1 hibernating (stream management)"
        hibernating = [line for line in srv.cli("connected").stdout.splitlines() if "phone" in line]
        assert len(hibernating) == 1 and hibernating[0].endswith("sm=hibernating"), hibernating


def test_kick_ends_sessions_with_a_stream_error(own_server):
    """`kick` with a full JID ends that session only; with a bare JID every session
    of the account, each with <policy-violation/> and the given reason as text; the
    other users' sessions are untouched and a kicked user may log in again."""
    srv = own_server(users=USERS)
    desk = RawClient(srv.port, srv.cert_path())
    phone = RawClient(srv.port, srv.cert_path())
    tablet = RawClient(srv.port, srv.cert_path())
    other = RawClient(srv.port, srv.cert_path())
    with desk, phone, tablet, other:
        desk.login("ann", USERS["ann@example.test"], "desk")
        phone.login("ann", USERS["ann@example.test"], "phone")
        tablet.login("ann", USERS["ann@example.test"], "tablet")
        other.login("ben", USERS["ben@example.test"], "desk")

        done = srv.cli("kick", "ann@example.test/desk")
        assert done.stdout.strip() == "ended 1 session(s) of ann@example.test/desk"
        got = expect_stream_error(desk)
        assert stream_error(got) == "policy-violation" and got.closing_tag
        assert phone.ping_server().get("type") == "result"

        done = srv.cli("kick", "ann@example.test", "--reason", "Maintenance, back at noon")
        assert done.stdout.strip() == "ended 2 session(s) of ann@example.test"
        for c in (phone, tablet):
            got = expect_stream_error(c)
            assert stream_error(got) == "policy-violation"
            texts = [child.text for el in got.elements for child in el if child.tag == f"{{{STREAM_ERRORS}}}text"]
            assert texts == ["Maintenance, back at noon"], texts
        assert other.ping_server().get("type") == "result"
        # One log line per connection end, with its reason and duration.
        srv.wait_log(r"Connection of ann@example\.test/tablet from 127\.0\.0\.1 ended "
                     r"\(stream error <policy-violation/>\) after \d+\.\d s")

        missing = srv.cli("kick", "ann@example.test", check=False)
        assert missing.returncode == 1
        assert missing.stderr == "fedxmpp: ann@example.test has no session on the running server\n"
        foreign = srv.cli("kick", "someone@elsewhere.test", check=False)
        assert foreign.returncode == 1 and "not a domain of this server" in foreign.stderr
    with RawClient(srv.port, srv.cert_path()) as again:
        again.login("ann", USERS["ann@example.test"], "desk")
        assert again.ping_server().get("type") == "result"
        again.send("</stream:stream>")
        srv.wait_log(r"Connection of ann@example\.test/desk from 127\.0\.0\.1 ended \(closed by the client\)")


def test_commands_say_when_the_server_is_not_running(own_server):
    """Without a running server (never started, or killed leaving its socket
    behind) each command that needs it exits 1 with one line saying so."""
    srv = own_server(users=USERS, start=False)
    for args in (["status"], ["connected"], ["kick", "ann@example.test"], ["reload"]):
        done = srv.cli(*args, check=False)
        assert done.returncode == 1 and done.stdout == "", (args, done)
        assert done.stderr.count("\n") == 1 and "the server is not running" in done.stderr, done.stderr
    srv.start()
    assert srv.cli("status").returncode == 0
    srv.kill()
    done = srv.cli("status", check=False)
    assert done.returncode == 1 and "the server is not running" in done.stderr, done.stderr


def test_version():
    """`fedxmpp --version` prints the version, without a configuration or a server."""
    done = subprocess.run([str(FEDXMPP), "--version"], capture_output=True, text=True, timeout=30,
                          env=server_env())
    assert done.returncode == 0 and done.stdout == f"fedxmpp {fedxmpp.__version__}\n", done
