"""Abuse limits with defaults: failed logins throttled per address, the listen
backlog, and the server's TLS 1.2 cipher order."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from tests.e2e.harness import IO_TIMEOUT, RawClient, free_port, sasl_condition, tls_context, wait_for

USERS = {"vic@example.test": "vic-password", "wes@example.test": "wes-password"}


def _attempt(srv, password: str) -> tuple[str | None, str, float]:
    """One PLAIN login on a fresh connection: the SASL outcome, its text, and how
    long the answer took."""
    with RawClient(srv.port, srv.cert_path()) as c:
        c.open()
        c.starttls()
        started = time.monotonic()
        outcome = c.auth_plain("vic", password)
        took = time.monotonic() - started
        text = next((child.text or "" for child in outcome if child.tag.endswith("}text")), "")
        return sasl_condition(outcome) if not outcome.tag.endswith("success") else "success", text, took


def test_failed_logins_are_slowed_then_blocked_per_address(own_server):
    """Each wrong password from one address is answered later than the one before
    (failure_delay, doubling); at block_after failures the address gets
    <temporary-auth-failure/> at once, even with the right password, until
    block_time has passed; a session that was already open is not touched."""
    srv = own_server({"auth": {"failure_delay": 0.2, "block_after": 4, "block_time": 4}}, users=USERS)
    with RawClient(srv.port, srv.cert_path()) as wes:
        wes.login("wes", USERS["wes@example.test"], "before")
        delays = []
        for n in range(4):
            condition, _, took = _attempt(srv, f"wrong-{n}")
            assert condition == "not-authorized"
            delays.append(took)
        # 0.2, 0.4, 0.8, 1.6 s: each at least its delay (lower bounds only).
        for took, least in zip(delays, (0.2, 0.4, 0.8, 1.6)):
            assert took >= least * 0.9, delays
        condition, text, _ = _attempt(srv, USERS["vic@example.test"])
        assert condition == "temporary-auth-failure" and "try again later" in text, (condition, text)
        srv.wait_log(r"Blocking authentication from 127\.0\.0\.1 for 4 s after 4 failures")
        assert wes.ping_server().get("type") == "result"
    # After block_time the right password works again.
    wait_for(lambda: _attempt(srv, USERS["vic@example.test"])[0] == "success", 15, interval=0.5,
             what="the block to end")


def test_failed_logins_block_an_account_except_from_addresses_it_used(own_server):
    """[auth] account_block_after failures for one account, whatever the address,
    refuse its password logins for block_time (even the right password) from
    addresses that never logged in to it; an address that did still gets in, and
    other accounts are untouched."""
    srv = own_server({"auth": {"failure_delay": 0, "block_after": 1000, "account_block_after": 3,
                               "block_time": 600}}, users=USERS)

    def login(user: str, password: str) -> tuple[str | None, str]:
        with RawClient(srv.port, srv.cert_path()) as c:
            c.open()
            c.starttls()
            outcome = c.auth_plain(user, password)
            text = next((child.text or "" for child in outcome if child.tag.endswith("}text")), "")
            return ("success" if outcome.tag.endswith("success") else sasl_condition(outcome)), text

    assert login("wes", USERS["wes@example.test"])[0] == "success"
    for n in range(3):
        assert login("vic", f"wrong-{n}")[0] == "not-authorized"
        assert login("wes", f"wrong-{n}")[0] == "not-authorized"
    condition, text = login("vic", USERS["vic@example.test"])
    assert condition == "temporary-auth-failure" and "this account" in text, (condition, text)
    srv.wait_log(r"Blocking password logins to vic@example\.test from new addresses for 600 s after 3 failures")
    # wes is blocked too, but 127.0.0.1 has logged in as wes before.
    srv.wait_log(r"Blocking password logins to wes@example\.test")
    assert login("wes", USERS["wes@example.test"])[0] == "success"


def _closed_at_once(port: int) -> bool:
    """Whether a new connection to *port* is closed by the server before it
    says anything (a stream header sent by us gets no answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        try:
            s.sendall(b"<?xml version='1.0'?><stream:stream to='example.test' version='1.0' "
                      b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
            return s.recv(4096) == b""
        except ConnectionError:
            return True


def test_connections_per_address_are_bounded(own_server):
    """[limits] max_connections_per_address: one more is closed at accept, and
    one fewer lets the next in; connection_rate_per_address: after the burst,
    new connections are closed until tokens refill."""
    metrics_port = free_port()
    srv = own_server({"limits": {"max_connections_per_address": 3, "connection_rate_per_address": 0,
                                 "exempt_addresses": []},
                      "metrics": {"listen": [f"tcp:{metrics_port}:interface=127.0.0.1"]}})

    def refused() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=20) as response:
            text = response.read().decode()
        line = next(line for line in text.splitlines() if line.startswith("fedxmpp_connections_refused_total "))
        return float(line.split()[1])

    # The harness's readiness probes may still be counted for a moment: hold
    # three connections, each seen answering.
    held: list[socket.socket] = []
    try:
        for _ in range(100):
            if len(held) == 3:
                break
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
            s.sendall(b"<?xml version='1.0'?><stream:stream to='example.test' version='1.0' "
                      b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
            try:
                answered = s.recv(4096) != b""
            except ConnectionError:
                answered = False
            if answered:
                held.append(s)
            else:
                s.close()
                time.sleep(0.1)
        assert len(held) == 3
        before = refused()
        assert _closed_at_once(srv.port)
        srv.wait_log(r"Refusing client connections from 127\.0\.0\.1: 3 connections open")
        assert refused() == before + 1
        held.pop().close()
        wait_for(lambda: not _closed_at_once(srv.port), 10, interval=0.2, what="a place to free up")
    finally:
        for s in held:
            s.close()
    assert srv.exited_cleanly(srv.terminate())
    srv.overrides = {"limits": {"max_connections_per_address": 0, "connection_rate_per_address": 0.5,
                                "connection_burst_per_address": 4, "exempt_addresses": []}}
    srv.write_config()
    srv.start()
    # The harness's own readiness probes took tokens too: at most 4 get in.
    outcomes = [_closed_at_once(srv.port) for _ in range(8)]
    assert not outcomes[0] and outcomes[-1] and outcomes.count(False) <= 4, outcomes
    srv.wait_log(r"Refusing client connections from 127\.0\.0\.1: more than 0\.5 new connections per second")


def _listen_backlog(port: int) -> int:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return int(lines[0][2])  # Send-Q of a listening socket: its backlog


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
def test_tcp_listeners_have_a_backlog_of_511_unless_told(own_server):
    """Both client listeners listen with backlog 511 ([server] listen_backlog), not
    Twisted's 50; an endpoint string's own backlog= wins."""
    srv = own_server()
    assert _listen_backlog(srv.port) == 511 and _listen_backlog(srv.tls_port) == 511
    assert srv.exited_cleanly(srv.terminate())
    srv.overrides = {"server": {"listen_backlog": 128},
                     "c2s": {"listen": [f"tcp:{srv.port}:interface=127.0.0.1:backlog=64"]}}
    srv.write_config()
    srv.start()
    assert _listen_backlog(srv.port) == 64 and _listen_backlog(srv.tls_port) == 128


def test_tls12_uses_the_servers_cipher_order(own_server):
    """A TLS 1.2 client that prefers ChaCha20 gets AES-128-GCM, the server's first
    choice (server cipher order), on the direct TLS port."""
    srv = own_server()
    ctx = tls_context(srv.cert_path(), max_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="example.test") as tls:
            name, version, _ = tls.cipher()
    assert version == "TLSv1.2" and name == "ECDHE-ECDSA-AES128-GCM-SHA256", (name, version)
