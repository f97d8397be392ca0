"""End-to-end harness: the real ``twistd fedxmpp`` in a subprocess, real clients.

* :class:`ServerProcess` writes a TOML configuration, provisions users with the
  ``fedxmpp`` admin command, starts ``twistd -n fedxmpp``, waits until it serves
  and stops it with SIGTERM (then SIGKILL after a bounded wait).
* :class:`RawClient` speaks XMPP by hand over a blocking socket (stdlib ``ssl``,
  or pyOpenSSL when a test needs the ``tls-exporter`` channel binding), so that
  tests can send what a real client library refuses to send.
* :func:`login` and friends drive slixmpp, an independent client library.

Every wait here is bounded; nothing sleeps to tune timing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

BIN = Path(sys.executable).parent
TWISTD = BIN / "twistd"
FEDXMPP = BIN / "fedxmpp"

DOMAIN = "example.test"
OTHER = "other.test"
DOMAINS = (DOMAIN, OTHER)

STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
CLIENT = "jabber:client"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SASL_CB_NS = "urn:xmpp:sasl-cb:0"
PING_NS = "urn:xmpp:ping"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
IO_TIMEOUT = 10.0


class HarnessError(AssertionError):
    """The harness could not get the server or a client into the state a test needs."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll *predicate* until it returns something truthy, at most *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- configuration ---------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        s = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        _toml_table(lines, f"[{name}]", name, values)
    return "\n".join(lines)


def _toml_table(lines: list[str], header: str, path: str, values: dict[str, Any]) -> None:
    """A table's plain keys first, then its sub-tables ([path.key]) and arrays of
    tables ([[path.key]]), e.g. {"component": [{"domain": ..., "privileges": {...}}]}."""
    lines.append(header)
    nested = []
    for key, value in values.items():
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    for key, value in nested:
        for entry in (value if isinstance(value, list) else [value]):
            table = f"[[{path}.{key}]]" if isinstance(value, list) else f"[{path}.{key}]"
            _toml_table(lines, table, f"{path}.{key}", entry)


def merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in (extra or {}).items():
        out.setdefault(section, {}).update(values)
    return out


# -- the server process -------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One ``twistd -n fedxmpp`` run in its own directory."""

    root: Path
    overrides: dict[str, dict[str, Any]] | None = None
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.config_path = self.root / "fedxmpp.toml"
        self.write_config()

    # -- files ---------------------------------------------------------------------

    @property
    def sections(self) -> dict[str, dict[str, Any]]:
        base = {
            "server": {"domains": list(DOMAINS), "data_dir": str(self.data_dir)},
            # No throttling of failed logins, which all come from 127.0.0.1 here
            # (test_abuse.py turns it on).
            "auth": {"scram_iterations": 4096, "failure_delay": 0, "block_after": 1000000,
                     "account_block_after": 1000000},
            "c2s": {"listen": [f"tcp:{self.port}:interface=127.0.0.1"],
                    "direct_tls": [f"tcp:{self.tls_port}:interface=127.0.0.1"]},
            # No federation listener unless a test asks (the default, *:5269, is shared).
            "s2s": {"listen": [], "direct_tls": []},
        }
        return merge(base, self.overrides)

    def write_config(self) -> None:
        self.config_path.write_text(toml_text(self.sections))

    @property
    def log_path(self) -> Path:
        return self.root / f"server-{self.runs}.log"

    def cert_path(self, domain: str = DOMAIN) -> Path:
        return self.data_dir / "certs" / f"{domain}.crt"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = IO_TIMEOUT) -> str:
        """The first log line matching the regular expression *pattern* (bounded wait)."""
        def found() -> str | None:
            hits = lines_matching(self.log_text(), pattern)
            return hits[0] if hits else None
        try:
            return wait_for(found, timeout, what=f"log line /{pattern}/")
        except HarnessError:
            raise HarnessError(f"no log line /{pattern}/ within {timeout}s:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- admin command ----------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(FEDXMPP), "--config", str(self.config_path), *args]
        try:
            done = subprocess.run(cmd, cwd=self.root, input=input, capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT, env=server_env())
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"{' '.join(cmd)} did not finish in {CLI_TIMEOUT}s: {e.stdout!r} {e.stderr!r}")
        if check and done.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
        return done

    def import_users(self, users: dict[str, str]) -> None:
        path = self.root / "users.csv"
        path.write_text("".join(f"{jid},{password}\n" for jid, password in users.items()))
        self.cli("import-users", str(path))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        log = open(self.log_path, "wb")
        cmd = [str(TWISTD), "-n", "--pidfile=", "fedxmpp", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=server_env())
        log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"server exited with {self.proc.returncode} before serving:\n{self.log_tail()}")
            if "fedxmpp serving" in self.log_text() and _can_connect(self.port) and _can_connect(self.tls_port):
                return
            if time.monotonic() >= deadline:
                raise HarnessError(f"server not serving after {START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait at most *timeout* seconds, then SIGKILL; the exit status."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                raise HarnessError(f"server ignored SIGTERM for {timeout}s and was killed:\n{self.log_tail()}")
        return proc.returncode

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait (bounded) for a process that was already told to stop; SIGKILL after."""
        proc = self.proc
        assert proc is not None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
            raise HarnessError(f"server still running {timeout}s after SIGTERM; killed:\n{self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop for teardown: the server must exit on SIGTERM, cleanly."""
        if self.proc is None:
            return
        code = self.terminate()
        if not self.exited_cleanly(code):
            raise HarnessError(f"server exited with status {code}:\n{self.log_tail()}")

    def exited_cleanly(self, code: int) -> bool:
        """Status 0, or twistd's re-raised SIGTERM after a complete, logged shutdown.

        twistd (twisted.scripts.twistd.runApp -> app._exitWithSignal) deliberately
        ends a process that was stopped by a signal by re-sending that signal to
        itself once the reactor has stopped, so a clean SIGTERM shutdown has the
        wait status "killed by SIGTERM" (-15 here), not 0.
        """
        if code == 0:
            return True
        return code == -signal.SIGTERM and "Server Shut Down." in self.log_text()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_twistd(config: Path, cwd: Path, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    """`twistd -n fedxmpp --config CONFIG` for a configuration that must not start."""
    cmd = [str(TWISTD), "-n", "--pidfile=", "fedxmpp", "--config", str(config)]
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=server_env())
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"twistd still running after {timeout}s (it should have refused the "
                           f"configuration): {e.stdout!r} {e.stderr!r}") from None


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# -- certificates ----------------------------------------------------------------------------


def tls_context(cafile: Path, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that trusts only *cafile* and checks the host name."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def file_fingerprint(path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    return hashlib.sha256(der).hexdigest()


def presented_fingerprint(port: int, cafile: Path, server_name: str = DOMAIN) -> str:
    """The SHA-256 fingerprint of the certificate the direct TLS port presents (verified)."""
    ctx = tls_context(cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def tls_client_hello(server_name: str = DOMAIN, *, without: bytes = b">", tries: int = 200) -> bytes:
    """The first flight of a real TLS client (stdlib ssl), as a client that tries direct
    TLS first sends it.  Its random fields vary, so one without the byte *without* is
    picked: a ClientHello without '>' is the case a stream parser cannot refuse by
    waiting for the end of a tag."""
    for _ in range(tries):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=server_name)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        if without not in hello:
            return hello
    raise HarnessError(f"no ClientHello without {without!r} in {tries} tries")


# -- a raw client ---------------------------------------------------------------------------------


class StreamClosed(Exception):
    """The server closed the stream or the connection."""


class _Transport:
    """A socket, a stdlib TLS socket or a pyOpenSSL connection, with deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn: Any = None  # pyOpenSSL Connection when used
        self.clean_end: bool | None = None

    def send(self, data: bytes, timeout: float) -> None:
        if self.conn is None:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            return
        from OpenSSL import SSL
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            try:
                n = self.conn.send(bytes(view[:16384]))
                view = view[n:]
            except SSL.WantReadError:
                self._wait(deadline, read=True)
            except SSL.WantWriteError:
                self._wait(deadline, read=False)

    def recv(self, timeout: float) -> bytes:
        """Some bytes, b'' at end of stream; socket.timeout when nothing came in time.

        At the end, :attr:`clean_end` says whether a TLS peer sent close_notify first
        (RFC 8446 §6.1) rather than just dropping the connection.
        """
        if self.conn is None:
            self.sock.settimeout(max(timeout, 0.001))
            try:
                data = self.sock.recv(65536)
            except ssl.SSLZeroReturnError:
                self.clean_end = True
                return b""
            except (ssl.SSLEOFError, ConnectionResetError):
                self.clean_end = False
                return b""
            if not data:
                # Plain TCP FIN; or a close_notify, which Python reports as b'' too.
                self.clean_end = True
            return data
        from OpenSSL import SSL
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.conn.recv(65536)
            except SSL.WantReadError:
                self._wait(deadline, read=True)
            except SSL.ZeroReturnError:
                self.clean_end = True
                return b""
            except SSL.SysCallError as e:
                if e.args and e.args[0] in (-1, 104):
                    self.clean_end = False
                    return b""
                raise

    def _wait(self, deadline: float, read: bool) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        fds = ([self.sock], [], []) if read else ([], [self.sock], [])
        r, w, _ = select.select(*fds, remaining)
        if not r and not w:
            raise socket.timeout("timed out")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.close()


@dataclass
class Received:
    """What a raw client got from the server, in order."""

    header: ET.Element | None = None
    elements: list[ET.Element] = field(default_factory=list)
    closing_tag: bool = False
    eof: bool = False
    # At eof: False if a TLS connection ended without close_notify (a truncation).
    clean_end: bool | None = None


class RawClient:
    """A hand-driven XMPP client over a blocking socket; every read has a deadline."""

    def __init__(self, port: int, cafile: Path, *, direct_tls: bool = False, domain: str = DOMAIN,
                 use_pyopenssl: bool = False, max_tls: ssl.TLSVersion | None = None) -> None:
        self.cafile = cafile
        self.domain = domain
        self.use_pyopenssl = use_pyopenssl
        self.max_tls = max_tls
        sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t = _Transport(sock)
        self.tls_version: str | None = None
        self.jid: str | None = None
        self._pending: list[ET.Element] = []
        self.received = Received()
        self._new_parser()
        if direct_tls:
            self._wrap_tls()

    # -- plumbing ---------------------------------------------------------------------------

    def _new_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0

    def close(self) -> None:
        self.t.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.t.send(data, IO_TIMEOUT)

    def _feed(self, data: bytes) -> None:
        self._parser.feed(data)
        for event, el in self._parser.read_events():
            if event == "start":
                if self._depth == 0:
                    self.received.header = el
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._pending.append(el)
                    self.received.elements.append(el)
                elif self._depth == 0:
                    self.received.closing_tag = True

    def next_element(self, timeout: float = IO_TIMEOUT) -> ET.Element:
        """The next top-level element; StreamClosed if the stream ends first."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            if self.received.closing_tag or self.received.eof:
                raise StreamClosed(self._describe())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"no element from the server within {timeout}s; got so far: {self._describe()}")
            try:
                data = self.t.recv(remaining)
            except (socket.timeout, TimeoutError):
                continue
            if not data:
                self.received.eof = True
                continue
            try:
                self._feed(data)
            except ET.ParseError as e:
                raise HarnessError(f"server sent XML we cannot parse ({e}): {data!r}")
        return self._pending.pop(0)

    def expect(self, tag: str, timeout: float = IO_TIMEOUT) -> ET.Element:
        el = self.next_element(timeout)
        if el.tag != tag:
            raise HarnessError(f"expected {tag}, got {to_text(el)}")
        return el

    def read_until_closed(self, timeout: float = IO_TIMEOUT, *, until_eof: bool = True) -> Received:
        """Read until the server closes the TCP connection (bounded), or, with
        *until_eof* false, until it has closed its stream (</stream:stream>)."""
        deadline = time.monotonic() + timeout
        while not self.received.eof and (until_eof or not self.received.closing_tag):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"connection still open after {timeout}s; got: {self._describe()}")
            try:
                data = self.t.recv(remaining)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                data = b""
                self.t.clean_end = False
            if not data:
                self.received.eof = True
                self.received.clean_end = self.t.clean_end
            else:
                with contextlib.suppress(ET.ParseError):
                    self._feed(data)
        self._pending.clear()
        return self.received

    def _describe(self) -> str:
        parts = [to_text(e) for e in self.received.elements[-5:]]
        return f"elements={parts} closing_tag={self.received.closing_tag} eof={self.received.eof}"

    # -- stream --------------------------------------------------------------------------------

    def header(self, to: str | None = None, *, stream_ns: str = STREAMS, default_ns: str = CLIENT,
               version: str = "1.0", prolog: str = "<?xml version='1.0'?>") -> str:
        to_attr = f" to='{to or self.domain}'" if to != "" else ""
        return (f"{prolog}<stream:stream{to_attr} xmlns='{default_ns}' xmlns:stream='{stream_ns}' "
                f"version='{version}' xml:lang='en'>")

    def open(self, **kw: Any) -> ET.Element:
        """Send a stream header; return the <stream:features/> that follows."""
        self._new_parser()
        self._pending.clear()
        self.received.closing_tag = False
        self.send(self.header(**kw))
        return self.expect(f"{{{STREAMS}}}features")

    def starttls(self, restart: bool = True) -> ET.Element | None:
        """STARTTLS (RFC 6120 §5), verifying the certificate; then (with *restart*) the
        new stream header and the features the server sends after it."""
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        self.expect(f"{{{TLS_NS}}}proceed")
        self._wrap_tls()
        if not restart:
            self._new_parser()
            return None
        return self.open()

    def _wrap_tls(self) -> None:
        if self.use_pyopenssl:
            self._wrap_pyopenssl()
            return
        ctx = tls_context(self.cafile, max_version=self.max_tls)
        # Ragged EOFs raise, so that a connection dropped without close_notify shows.
        tls = ctx.wrap_socket(self.t.sock, server_hostname=self.domain, do_handshake_on_connect=False,
                              suppress_ragged_eofs=False)
        tls.settimeout(IO_TIMEOUT)
        tls.do_handshake()
        self.t.sock = tls
        self.tls_version = tls.version()

    def _wrap_pyopenssl(self) -> None:
        from OpenSSL import SSL
        from service_identity.pyopenssl import verify_hostname

        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
        ctx.load_verify_locations(str(self.cafile))
        if self.max_tls == ssl.TLSVersion.TLSv1_2:
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        conn = SSL.Connection(ctx, self.t.sock)
        conn.set_tlsext_host_name(self.domain.encode())
        conn.set_connect_state()
        self.t.conn = conn
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                self.t._wait(deadline, read=True)
            except SSL.WantWriteError:
                self.t._wait(deadline, read=False)
        verify_hostname(conn, self.domain)
        self.tls_version = conn.get_protocol_version_name()

    # -- channel bindings (pyOpenSSL only) ------------------------------------------------

    def channel_binding(self, kind: str) -> bytes:
        conn = self.t.conn
        if conn is None:
            raise HarnessError("channel bindings need use_pyopenssl=True")
        if kind == "tls-exporter":
            return conn.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        if kind == "tls-unique":
            return conn.get_finished()
        if kind == "tls-server-end-point":
            from cryptography.hazmat.primitives import hashes
            cert = conn.get_peer_certificate().to_cryptography()
            algo = cert.signature_hash_algorithm
            if algo is None or algo.name in ("md5", "sha1"):
                algo = hashes.SHA256()
            h = hashes.Hash(algo)
            from cryptography.hazmat.primitives.serialization import Encoding
            h.update(cert.public_bytes(Encoding.DER))
            return h.finalize()
        raise HarnessError(f"unknown channel binding {kind}")

    # -- SASL -----------------------------------------------------------------------------------

    def auth_plain(self, user: str, password: str) -> ET.Element:
        """PLAIN (RFC 4616); the server's <success/> or <failure/>."""
        data = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{data}</auth>")
        return self.next_element()

    def auth_scram(self, user: str, password: str, mechanism: str = "SCRAM-SHA-256",
                   cb_type: str | None = None, gs2_flag: str | None = None,
                   cb_data: bytes | None = None) -> ET.Element:
        """SCRAM (RFC 5802/7677), -PLUS with *cb_type*; the final <success/> or <failure/>.

        On success the server's signature (v=) is checked, so a server that does
        not know the password cannot pass.
        """
        hash_name = "sha256" if "SHA-256" in mechanism else "sha1"
        if gs2_flag is None:
            gs2_flag = f"p={cb_type}" if cb_type else "n"
        gs2_header = f"{gs2_flag},,".encode()
        cnonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={user},r={cnonce}".encode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>"
                  f"{base64.b64encode(gs2_header + first_bare).decode()}</auth>")
        challenge = self.next_element()
        if challenge.tag != f"{{{SASL_NS}}}challenge":
            return challenge
        server_first = base64.b64decode(challenge.text or "")
        attrs = dict(item.split(b"=", 1) for item in server_first.split(b","))
        nonce, salt, iterations = attrs[b"r"], base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
        if not nonce.startswith(cnonce.encode()):
            raise HarnessError(f"server nonce {nonce!r} does not extend ours")
        if cb_data is None and cb_type:
            cb_data = self.channel_binding(cb_type)
        cbind = gs2_header + (cb_data or b"")
        final_bare = b"c=" + base64.b64encode(cbind) + b",r=" + nonce
        auth_message = first_bare + b"," + server_first + b"," + final_bare
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        stored_key = hashlib.new(hash_name, client_key).digest()
        signature = hmac.digest(stored_key, auth_message, hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = final_bare + b",p=" + base64.b64encode(proof)
        self.send(f"<response xmlns='{SASL_NS}'>{base64.b64encode(final).decode()}</response>")
        outcome = self.next_element()
        if outcome.tag == f"{{{SASL_NS}}}success":
            server_key = hmac.digest(salted, b"Server Key", hash_name)
            expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, hash_name))
            got = base64.b64decode(outcome.text or "")
            if got != expected:
                raise HarnessError(f"server signature mismatch: {got!r} != {expected!r}")
        return outcome

    def login(self, user: str, password: str, resource: str | None = "raw", *,
              mechanism: str = "PLAIN") -> str:
        """STARTTLS (unless already TLS), authenticate, bind; the bound full JID."""
        if self.tls_version is None:
            self.open()
            self.starttls()
        else:
            self.open()
        if mechanism == "PLAIN":
            outcome = self.auth_plain(user, password)
        else:
            outcome = self.auth_scram(user, password, mechanism)
        if outcome.tag != f"{{{SASL_NS}}}success":
            raise HarnessError(f"login of {user} failed: {to_text(outcome)}")
        self.open()
        return self.bind(resource)

    def bind(self, resource: str | None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>{res}</bind></iq>")
        reply = self.expect(f"{{{CLIENT}}}iq")
        jid = reply.find(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid")
        if reply.get("type") != "result" or jid is None:
            raise HarnessError(f"bind failed: {to_text(reply)}")
        self.jid = jid.text
        return self.jid

    def ping_server(self, ident: str = "barrier") -> ET.Element:
        """An iq round trip to the server: everything sent before it has been processed."""
        self.send(f"<iq type='get' id='{ident}' to='{self.domain}'><ping xmlns='{PING_NS}'/></iq>")
        while True:
            el = self.next_element()
            if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == ident:
                return el


# -- reading what came back ---------------------------------------------------------------------


def to_text(el: ET.Element | None) -> str:
    if el is None:
        return "None"
    return ET.tostring(el, encoding="unicode")


def mechanisms(features: ET.Element) -> list[str]:
    return [m.text or "" for m in features.iter(f"{{{SASL_NS}}}mechanism")]


def channel_binding_types(features: ET.Element) -> list[str]:
    return [cb.get("type", "") for cb in features.iter(f"{{{SASL_CB_NS}}}channel-binding")]


def stream_error(received: Received | Iterable[ET.Element]) -> str | None:
    """The defined condition of the first <stream:error/>, if any."""
    elements = received.elements if isinstance(received, Received) else received
    for el in elements:
        if el.tag == f"{{{STREAMS}}}error":
            for child in el:
                if child.tag.startswith(f"{{{STREAM_ERRORS}}}") and not child.tag.endswith("}text"):
                    return child.tag.split("}", 1)[1]
            return "(no condition)"
    return None


def sasl_condition(el: ET.Element) -> str | None:
    if el.tag != f"{{{SASL_NS}}}failure":
        return None
    for child in el:
        if child.tag != f"{{{SASL_NS}}}text":
            return child.tag.split("}", 1)[1]
    return "(no condition)"


def stanza_error(el: ET.Element) -> str | None:
    err = el.find(f"{{{CLIENT}}}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{STANZA_ERRORS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return "(no condition)"


def expect_stream_error(client: RawClient, timeout: float = IO_TIMEOUT) -> Received:
    """Read until the server has closed its stream, and check it did so with a stream
    error (RFC 6120 §4.9).  Whether the server then also closes the TCP connection is
    test_server_closes_connection's business, so that one defect does not hide others."""
    got = client.read_until_closed(timeout, until_eof=False)
    if stream_error(got) is None:
        raise HarnessError(f"the server closed without a stream error: {client._describe()}")
    return got


# -- slixmpp --------------------------------------------------------------------------------------


class LoginFailed(Exception):
    def __init__(self, reason: str, conditions: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.conditions = conditions


@dataclass
class Client:
    """A logged-in slixmpp client with queues of what it received."""

    xmpp: Any
    messages: asyncio.Queue
    stream_errors: asyncio.Queue
    disconnected: asyncio.Event

    @property
    def jid(self) -> Any:
        return self.xmpp.boundjid

    async def next_message(self, timeout: float = IO_TIMEOUT) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def barrier(self, timeout: float = IO_TIMEOUT) -> None:
        """Ping the server: everything this client sent before has been processed."""
        iq = self.xmpp.plugin["xep_0199"].send_ping(self.xmpp.boundjid.host, timeout=timeout)
        result = await asyncio.wait_for(iq, timeout + 1)
        assert result["type"] == "result", result

    async def available(self, priority: int = 0) -> None:
        """Send initial presence and wait until the server has taken it into account."""
        self.xmpp.send_presence(ppriority=priority)
        await self.barrier()

    async def close(self, timeout: float = 5.0) -> None:
        await close_slixmpp(self.xmpp, timeout)


async def close_slixmpp(xmpp: Any, timeout: float = 5.0) -> None:
    """Disconnect a slixmpp client or component politely, then by force if need be."""
    with contextlib.suppress(Exception):
        if xmpp.transport is not None:
            await asyncio.wait_for(xmpp.disconnect(wait=1.0), timeout)
    with contextlib.suppress(Exception):
        xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            xmpp.abort()


def make_xmpp(jid: str, password: str, cafile: Path, *, mech: str | None = None,
              max_tls: ssl.TLSVersion | None = None) -> Any:
    import slixmpp

    xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mech)
    xmpp.ssl_context = tls_context(cafile, max_version=max_tls)
    # slixmpp's default connect behaviour, as every slixmpp client out there has it:
    # direct TLS first on the port it is given, then STARTTLS on the same port
    # (slixmpp >= 1.10).  The port the test picks decides which one succeeds.
    assert xmpp.enable_direct_tls and xmpp.enable_starttls and not xmpp.enable_plaintext
    xmpp.use_aiodns = False
    xmpp.whitespace_keepalive = False
    xmpp.register_plugin("xep_0199", {"keepalive": False})
    return xmpp


async def login(server: ServerProcess, jid: str, password: str, *, mech: str | None = None,
                direct_tls: bool = False, max_tls: ssl.TLSVersion | None = None,
                timeout: float = IO_TIMEOUT, plugins: dict[str, dict] | None = None) -> Client:
    """Connect slixmpp to the server and wait for its session to start (bounded).
    *plugins* are registered before connecting, e.g. ``{"xep_0198": {}}``.

    Raises :class:`LoginFailed` naming the SASL conditions seen when it cannot.
    """
    domain = jid.split("/", 1)[0].rsplit("@", 1)[-1]
    cafile = server.cert_path(domain)
    xmpp = make_xmpp(jid, password, cafile, mech=mech, max_tls=max_tls)
    for name, plugin_config in (plugins or {}).items():
        xmpp.register_plugin(name, plugin_config)
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future = loop.create_future()
    conditions: list[str] = []
    client = Client(xmpp, asyncio.Queue(), asyncio.Queue(), asyncio.Event())

    def settle(value: Any) -> None:
        if not outcome.done():
            outcome.set_result(value)

    xmpp.add_event_handler("session_start", lambda _e: settle(None))
    xmpp.add_event_handler("failed_auth", lambda s: conditions.append(s["condition"]))
    xmpp.add_event_handler("failed_all_auth", lambda _e: settle("all SASL mechanisms failed"))
    # One attempt failing is not the end: on the STARTTLS port the direct TLS attempt
    # fails first.  slixmpp announces a reconnect_delay once every way has failed.
    attempts: list[str] = []
    xmpp.add_event_handler("connection_failed", lambda e: attempts.append(str(e)))
    xmpp.add_event_handler("reconnect_delay", lambda _e: settle(f"every connection attempt failed: {attempts}"))
    xmpp.add_event_handler("ssl_invalid_chain", lambda e: settle(f"certificate not trusted: {e}"))
    xmpp.add_event_handler("message", client.messages.put_nowait)
    xmpp.add_event_handler("stream_error", client.stream_errors.put_nowait)

    def on_disconnected(_e: Any) -> None:
        client.disconnected.set()
        settle("disconnected before the session started")

    xmpp.add_event_handler("disconnected", on_disconnected)
    port = server.tls_port if direct_tls else server.port
    xmpp.connect("127.0.0.1", port)
    try:
        reason = await asyncio.wait_for(outcome, timeout)
    except asyncio.TimeoutError:
        reason = f"no session after {timeout}s"
    if reason is not None:
        await client.close()
        raise LoginFailed(f"{jid}: {reason} (SASL failures: {conditions})", conditions)
    return client


def kill(client: Client) -> None:
    """Drop a slixmpp client's connection the way a crashed device or a dead network
    does: a TCP reset, with neither </stream:stream> nor TLS close_notify."""
    transport = client.xmpp.transport
    if transport is None:
        raise HarnessError("the client is not connected")
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextlib.asynccontextmanager
async def logged_in(server: ServerProcess, jid: str, password: str, **kw: Any) -> Any:
    client = await login(server, jid, password, **kw)
    try:
        yield client
    finally:
        await client.close()


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run one slixmpp scenario in a fresh event loop, bounded as a whole."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def check_login(server: ServerProcess, jid: str, password: str) -> None:
    """A normal slixmpp login still works."""
    async def scenario() -> None:
        async with logged_in(server, jid, password) as c:
            await c.barrier()
    run(scenario())


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def lines_matching(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(pattern, line)]
