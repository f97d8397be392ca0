"""What the running server logs: ``[log] level`` (and its reload), the JSON
format, and no secret even at debug level."""

from __future__ import annotations

import base64
import json

from tests.e2e.harness import RawClient, sasl_condition

USERS = {"ann@example.test": "Ann-Secret-Pass-42", "ben@example.test": "Ben-Secret-Pass-43"}


def test_no_password_in_a_debug_log_of_logins(own_server):
    """PLAIN and SCRAM logins, a failed one and a password change, logged at debug
    level: neither a password nor the PLAIN message that carries one appears."""
    srv = own_server({"log": {"level": "debug"}}, users=USERS)
    with RawClient(srv.port, srv.cert_path()) as ann:
        ann.login("ann", USERS["ann@example.test"], "plain", mechanism="PLAIN")
        ann.send("<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>ann</username>"
                 "<password>Ann-New-Secret-99</password></query></iq>")
        while ann.next_element().get("id") != "pw":
            pass
    with RawClient(srv.port, srv.cert_path()) as ben:
        ben.login("ben", USERS["ben@example.test"], "scram", mechanism="SCRAM-SHA-256")
    with RawClient(srv.port, srv.cert_path()) as bad:
        bad.open()
        bad.starttls()
        assert sasl_condition(bad.auth_plain("ben", "Wrong-Secret-Pass-44")) == "not-authorized"
    srv.wait_log(r"Authenticated ben@example\.test")
    srv.wait_log(r"SASL SCRAM-SHA-256 started for example\.test from 127\.0\.0\.1")  # debug level
    text = srv.log_text()
    for secret in ("Ann-Secret-Pass-42", "Ben-Secret-Pass-43", "Ann-New-Secret-99", "Wrong-Secret-Pass-44"):
        assert secret not in text, secret
        for user in ("ann", "ben"):
            plain = base64.b64encode(f"\0{user}\0{secret}".encode()).decode()
            assert plain not in text, (user, secret)


def test_level_hides_info_and_reload_changes_it(own_server):
    """Reloaded to "warn", a login is not logged; reloaded back to "info", it is."""
    srv = own_server(users=USERS)

    def set_level(level: str) -> None:
        srv.overrides = {**(srv.overrides or {}), "log": {"level": level}}
        srv.write_config()
        done = srv.cli("reload")
        assert "applied log.level" in done.stdout, done

    set_level("warn")
    with RawClient(srv.port, srv.cert_path()) as ann:
        ann.login("ann", USERS["ann@example.test"], "one")
        ann.ping_server()
    set_level("info")
    with RawClient(srv.port, srv.cert_path()) as ann:
        ann.login("ann", USERS["ann@example.test"], "two")
    srv.wait_log(r"Bound ann@example\.test/two")
    text = srv.log_text()
    assert "Bound ann@example.test/two" in text and "Bound ann@example.test/one" not in text, text


def test_json_format_is_one_object_per_line(own_server):
    """With format = "json" what the server logs once running is JSON, one event a line."""
    srv = own_server({"log": {"format": "json"}}, users=USERS)
    with RawClient(srv.port, srv.cert_path()) as ann:
        ann.login("ann", USERS["ann@example.test"], "desk")
    srv.wait_log(r'"user": "ann"')
    events = [json.loads(line) for line in srv.log_text().splitlines() if line.startswith("{")]
    logins = [e for e in events if e.get("log_format", "").startswith("Authenticated")]
    assert len(logins) == 1 and logins[0]["user"] == "ann" and logins[0]["domain"] == "example.test", logins
    assert logins[0]["log_level"]["name"] == "info" and logins[0]["log_namespace"].startswith("fedxmpp.")
    # Nothing after the JSON lines started is plain text.
    lines = srv.log_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert all(line.startswith("{") for line in lines[first:]), lines[first:]


def test_component_and_server_connections_log_their_end(own_server):
    """One line per component and incoming server-to-server connection end, as
    for clients: who, from where, why, after how long."""
    import socket

    from tests.e2e.component_client import attached
    from tests.e2e.harness import IO_TIMEOUT, free_port, run

    component_port, s2s_port = free_port(), free_port()
    srv = own_server({"components": {"listen": [f"tcp:{component_port}:interface=127.0.0.1"],
                                     "component": [{"domain": "gw.example.test", "secret": "gw-secret"}]},
                      "s2s": {"listen": [f"tcp:{s2s_port}:interface=127.0.0.1"]}})

    async def component():
        async with attached(component_port, "gw.example.test", "gw-secret"):
            pass
    run(component())
    srv.wait_log(r"Connection of component gw\.example\.test from 127\.0\.0\.1 ended \(closed by the component\) "
                 r"after \d+\.\d s")

    with socket.create_connection(("127.0.0.1", s2s_port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  b"xmlns:stream='http://etherx.jabber.org/streams' from='remote.example' "
                  b"to='example.test' version='1.0'><not-xml")
        s.sendall(b"<<>")
        while s.recv(4096):
            pass
    srv.wait_log(r"S2S incoming stream from remote\.example \(127\.0\.0\.1\) ended "
                 r"\(stream error <not-well-formed/>\) after \d+\.\d s")
