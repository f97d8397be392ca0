"""Passwords: the hidden prompt of `fedxmpp adduser` on a real terminal, and the
minimum length ([auth] min_password_length) in-band (XEP-0077)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import termios
import time

from tests.e2e.harness import CLIENT, FEDXMPP, STANZA_ERRORS, RawClient, server_env, stanza_error, to_text
from tests.e2e.test_register import iq, register

TYPED = "typed-on-the-tty-42"


def _read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} from the command within {timeout}s: {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the other side of the terminal is closed
                chunk = b""
            assert chunk, f"the command ended before {wanted!r}: {bytes(seen)!r}"
            seen.extend(chunk)


def _on_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_adduser_asks_on_the_terminal_without_echo(own_server):
    """`fedxmpp adduser JID` run on a terminal (a pseudo-terminal here) asks for the
    password twice and never echoes it; the account then logs in with it."""
    srv = own_server(start=False)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(FEDXMPP), "--config", str(srv.config_path), "adduser", "tty@example.test"],
                            stdin=slave, stdout=slave, stderr=slave, env=server_env(), preexec_fn=_on_terminal)
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Password: ", seen)
        os.write(master, TYPED.encode() + b"\n")
        _read_until(master, b"Again: ", seen)
        os.write(master, TYPED.encode() + b"\n")
        _read_until(master, b"added tty@example.test", seen)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    assert TYPED.encode() not in seen, bytes(seen)
    srv.start()
    with RawClient(srv.port, srv.cert_path()) as c:
        c.login("tty", TYPED, "r")


def test_in_band_registration_and_password_change_enforce_the_minimum(own_server):
    """A password shorter than 8 characters gets <not-acceptable/> with a text, for
    a new account and for a password change; 8 characters are enough."""
    srv = own_server({"registration": {"enabled": True}}, users={"kim@example.test": "kim-password"})
    with RawClient(srv.port, srv.cert_path()) as c:
        c.open()
        c.starttls()
        short = register(c, "newbie", "seven77", "r1")
        assert stanza_error(short) == "not-acceptable", to_text(short)
        text = short.find(f"{{{CLIENT}}}error/{{{STANZA_ERRORS}}}text")
        assert text is not None and "at least 8 characters" in text.text, to_text(short)
        assert register(c, "newbie", "eight888", "r2").get("type") == "result"
    with RawClient(srv.port, srv.cert_path()) as c:
        c.login("kim", "kim-password", "r")
        change = iq(c, "<iq type='set' id='pw'><query xmlns='jabber:iq:register'><username>kim</username>"
                       "<password>short</password></query></iq>", "pw")
        assert stanza_error(change) == "not-acceptable", to_text(change)
    with RawClient(srv.port, srv.cert_path()) as c:
        c.login("kim", "kim-password", "again")
