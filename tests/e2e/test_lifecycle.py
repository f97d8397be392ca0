"""The server process: timeouts, clean shutdown, configuration errors, certificates."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.harness import (
    DOMAIN, OTHER, RawClient, expect_stream_error, file_fingerprint,
    logged_in, presented_fingerprint, run, run_twistd, stream_error,
)

USERS = {"walter@example.test": "walter-secret", "wendy@example.test": "wendy-secret"}


def test_auth_timeout(own_server):
    """With auth_timeout = 2, connections that do not finish authentication (one silent
    from the first byte, one stalled after STARTTLS) are closed with <connection-timeout/>
    after about 2 s, while a session that bound its resource in time stays open."""
    srv = own_server({"c2s": {"auth_timeout": 2}}, users=USERS)
    bound = RawClient(srv.port, srv.cert_path())
    bound.login("walter", USERS["walter@example.test"], "stays")
    silent = RawClient(srv.port, srv.cert_path())
    stalled = RawClient(srv.port, srv.cert_path())
    stalled.open()
    stalled.starttls()
    started = time.monotonic()
    with bound, silent, stalled:
        for c in (silent, stalled):
            got = expect_stream_error(c, timeout=15)
            assert stream_error(got) == "connection-timeout", c._describe()
            assert got.closing_tag
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed <= 15, elapsed
        # More than auth_timeout has passed since the bound session connected.
        assert bound.ping_server().get("type") == "result"


def test_clean_shutdown(own_server):
    """On SIGTERM every connected client (bound or still negotiating, raw or slixmpp) gets
    <system-shutdown/> then </stream:stream>, and twistd stops cleanly: its log ends with
    "Server Shut Down." and its status is 0 or twistd's own re-raised SIGTERM (see
    ServerProcess.exited_cleanly), and never needs SIGKILL."""
    srv = own_server(users=USERS)
    bound = RawClient(srv.port, srv.cert_path())
    bound.login("walter", USERS["walter@example.test"], "raw")
    negotiating = RawClient(srv.tls_port, srv.cert_path(), direct_tls=True)
    negotiating.open()

    async def scenario():
        async with logged_in(srv, "wendy@example.test/sl", USERS["wendy@example.test"]) as wendy:
            srv.proc.send_signal(signal.SIGTERM)
            raw = [asyncio.ensure_future(asyncio.to_thread(c.read_until_closed, 10)) for c in (bound, negotiating)]
            error = await asyncio.wait_for(wendy.stream_errors.get(), 10)
            assert error["condition"] == "system-shutdown"
            await asyncio.wait_for(wendy.disconnected.wait(), 10)
            return await asyncio.gather(*raw)

    with bound, negotiating:
        for got in run(scenario()):
            assert stream_error(got) == "system-shutdown", got
            assert got.closing_tag
    code = srv.wait_exit()
    assert srv.exited_cleanly(code), (code, srv.log_tail())
    assert "Traceback" not in srv.log_text(), srv.log_tail()


BAD_CONFIGS = {
    "unknown-key": ("[c2s]\nlisten_on = ['tcp:5222']\n", "c2s.listen_on"),
    "unknown-section": ("[bogus]\nx = 1\n", "bogus"),
    "wrong-type": ("[auth]\nmax_attempts = 'three'\n", "auth.max_attempts"),
    "wrong-type-list": ("[server]\ndomains = 'example.test'\n", "server.domains"),
    "bad-value": ("[limits]\nmax_depth = 2\n", "limits.max_depth"),
    "bad-domain": ("[server]\ndomains = ['Example.TEST']\n", "server.domains"),
    "bad-endpoint": ("[c2s]\nlisten = ['5222']\n", "c2s.listen"),
    "endpoint-typo": ("[c2s]\nlisten = ['tcp:5222:interfce=127.0.0.1']\n", "c2s.listen"),
    "endpoint-type-typo": ("[components]\nlisten = ['tpc:5347']\n", "components.listen"),
    "missing-certificates-dir": ("[server]\ndata_dir = 'data'\n[tls]\ncertificates = 'nonexistent/dir'\n",
                                 "tls.certificates"),
    "missing-ca-file": ("[s2s]\nca_file = 'missing-ca.pem'\n", "s2s.ca_file"),
    "not-toml": ("[server\n", None),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config(tmp_path, name):
    """A bad configuration stops `twistd -n fedxmpp` before it serves: non-zero exit, and
    one line naming the file and the key, no traceback."""
    text, key = BAD_CONFIGS[name]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = run_twistd(path, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    naming = [line for line in output.splitlines() if str(path) in line]
    assert len(naming) == 1, output
    if key is not None:
        assert key in naming[0], output
    assert "serving" not in output, output
    assert not (tmp_path / "nonexistent").exists(), "a mistyped certificate directory was created"


def test_missing_config_file(tmp_path):
    """A config path that does not exist is one line naming it, and a non-zero exit."""
    path = tmp_path / "absent.toml"
    done = run_twistd(path, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    assert len([line for line in output.splitlines() if str(path) in line]) == 1, output


def test_certificate_reused(own_server):
    """The self-signed certificate generated on first start is the one presented, one per
    hosted domain (SNI), and the second start reuses it (same fingerprint)."""
    srv = own_server()
    first = {d: file_fingerprint(srv.cert_path(d)) for d in (DOMAIN, OTHER)}
    assert first[DOMAIN] != first[OTHER]
    for d in (DOMAIN, OTHER):
        assert presented_fingerprint(srv.tls_port, srv.cert_path(d), d) == first[d]
    assert srv.exited_cleanly(srv.terminate())
    srv.start()
    second = {d: file_fingerprint(srv.cert_path(d)) for d in (DOMAIN, OTHER)}
    assert second == first
    assert presented_fingerprint(srv.tls_port, srv.cert_path(DOMAIN)) == first[DOMAIN]
    assert srv.exited_cleanly(srv.terminate())


def test_adduser_while_running(server):
    """`fedxmpp adduser` while the server runs creates an account that can log in at
    once; `fedxmpp passwd` and `fedxmpp deluser` take effect on the next login too."""
    done = server.cli("adduser", "newbie@example.test", "--password-stdin", input="fresh-password\n")
    assert "newbie@example.test" in done.stdout

    async def works(pw: str) -> None:
        async with logged_in(server, "newbie@example.test/new", pw) as c:
            await c.barrier()

    async def refused(pw: str) -> None:
        from tests.e2e.harness import LoginFailed, login
        with pytest.raises(LoginFailed) as info:
            await login(server, "newbie@example.test", pw)
        assert info.value.conditions and set(info.value.conditions) == {"not-authorized"}, info.value.reason

    run(works("fresh-password"))
    server.cli("passwd", "newbie@example.test", "--password", "changed-password")
    run(refused("fresh-password"))
    run(works("changed-password"))
    server.cli("deluser", "newbie@example.test")
    run(refused("changed-password"))


@pytest.mark.parametrize("client_closes", [True, False], ids=["client-closes-stream", "client-silent"])
@pytest.mark.parametrize("transport", ["starttls", "direct_tls"])
def test_server_closes_connection(server, transport, client_closes):
    """After a stream error on a TLS stream the server closes the connection within a few
    seconds, whether the client answers with its own </stream:stream> or stays silent
    (RFC 6120 §4.4), so that a peer cannot keep a socket open after being told to go
    away; and it ends TLS properly, with close_notify (RFC 8446 §6.1: each party MUST
    send close_notify before closing its write side), not with a bare TCP close."""
    c = RawClient(server.tls_port if transport == "direct_tls" else server.port, server.cert_path(),
                  direct_tls=transport == "direct_tls")
    with c:
        c.open()
        if transport == "starttls":
            c.starttls()
        c.send("<message to='nobody@example.test'><body>before auth</body></message>")
        got = expect_stream_error(c)
        assert stream_error(got) == "not-authorized" and got.closing_tag
        if client_closes:
            c.send("</stream:stream>")
        got = c.read_until_closed(timeout=5 if client_closes else 15)
        assert got.eof
        assert got.clean_end, "the server dropped the TLS connection without close_notify"


def test_port_in_use_fails_start_up(tmp_path):
    """A c2s port that is already taken stops start-up with one line naming the file,
    the key and the address, no traceback, and a non-zero exit a supervisor can see."""
    import socket as _socket

    from tests.e2e.harness import free_port

    holder = _socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        path = tmp_path / "busy.toml"
        path.write_text(
            f'[server]\ndomains = ["example.test"]\ndata_dir = "{tmp_path / "data"}"\n'
            f'[c2s]\nlisten = ["tcp:{taken}:interface=127.0.0.1"]\n'
            f'direct_tls = ["tcp:{free_port()}:interface=127.0.0.1"]\n[s2s]\nlisten = []\n')
        done = run_twistd(path, tmp_path)
    finally:
        holder.close()
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    naming = [line for line in output.splitlines() if "c2s.listen" in line]
    assert len(naming) == 1 and str(path) in naming[0] and str(taken) in naming[0], output
    assert "fedxmpp serving" not in output, output
