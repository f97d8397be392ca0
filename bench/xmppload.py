"""A lean asyncio XMPP client for load generation (not a general-purpose client).

It does exactly what the benchmark needs, over asyncio streams:

* stream header, STARTTLS (``StreamWriter.start_tls``), certificate verified
  against the server's own self-signed certificate, hostname checked;
* SASL SCRAM-SHA-256 by hand (RFC 5802 / RFC 7677), GS2 header ``n,,`` (this
  client does no channel binding), with the server signature checked;
* resource binding and an initial ``<presence/>``;
* incremental parsing of what the server sends with
  :class:`xml.etree.ElementTree.XMLPullParser`: every complete child of
  ``<stream:stream>`` is handed over as an Element and then detached from the
  root, so memory stays flat over a long stream.

Like real clients, it caches the SCRAM SaltedPassword per user (keyed by user,
salt and iteration count, together with the ClientKey/StoredKey/ServerKey
derived from it), so a second login of the same user costs the client only a
few HMACs.  See :class:`ScramCache`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections import deque
from typing import Callable

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"

T_FEATURES = f"{{{NS_STREAMS}}}features"
T_STREAM_ERROR = f"{{{NS_STREAMS}}}error"
T_PROCEED = f"{{{NS_TLS}}}proceed"
T_STARTTLS = f"{{{NS_TLS}}}starttls"
T_MECHANISMS = f"{{{NS_SASL}}}mechanisms"
T_CHALLENGE = f"{{{NS_SASL}}}challenge"
T_SUCCESS = f"{{{NS_SASL}}}success"
T_FAILURE = f"{{{NS_SASL}}}failure"
T_IQ = f"{{{NS_CLIENT}}}iq"
T_MESSAGE = f"{{{NS_CLIENT}}}message"
T_PRESENCE = f"{{{NS_CLIENT}}}presence"
T_STATUS = f"{{{NS_CLIENT}}}status"
T_BODY = f"{{{NS_CLIENT}}}body"
T_BIND = f"{{{NS_BIND}}}bind"
T_JID = f"{{{NS_BIND}}}jid"

MECHANISM = "SCRAM-SHA-256"


class XMPPError(Exception):
    """The login or the stream failed; the text says at which step and why."""


class ScramCache:
    """SaltedPassword and the keys derived from it, per (user, salt, iterations).

    Computing SaltedPassword (PBKDF2, ``i`` iterations) is the only expensive
    client-side step of SCRAM; real clients keep it (or ClientKey/ServerKey)
    after the first login.  ``derivations`` counts the PBKDF2 runs, ``hits``
    the logins that reused a cached entry.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[str, bytes, int], tuple[bytes, bytes, bytes]] = {}
        self.derivations = 0
        self.derive_seconds = 0.0
        self.hits = 0

    def keys(self, user: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
        """(ClientKey, StoredKey, ServerKey) for SCRAM-SHA-256."""
        k = (user, salt, iterations)
        found = self._keys.get(k)
        if found is not None:
            self.hits += 1
            return found
        t = time.perf_counter()
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
        self.derive_seconds += time.perf_counter() - t
        self.derivations += 1
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._keys[k] = (client_key, stored_key, server_key)
        return self._keys[k]


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def make_ssl_context(cafile: str) -> ssl.SSLContext:
    """Verify the server against *cafile* (its self-signed certificate), hostname included."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Client:
    """One XMPP client connection.  Create, ``await login()``, then use ``send``."""

    def __init__(self, host: str, port: int, domain: str, user: str, password: str, *,
                 ssl_context: ssl.SSLContext, scram: ScramCache, resource: str = "bench",
                 on_stanza: Callable[[ET.Element], None] | None = None) -> None:
        self.host, self.port, self.domain = host, port, domain
        self.user, self.password, self.resource = user, password, resource
        self.ssl_context = ssl_context
        self.scram = scram
        self.on_stanza = on_stanza
        self.jid = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.nodelay: bool | None = None
        self.tls_version = ""
        self.stream_error: str | None = None
        self.closed_by_server = asyncio.Event()
        self._pending: deque[ET.Element] = deque()
        self._reader_task: asyncio.Task | None = None
        self._new_parser()

    # -- parsing -------------------------------------------------------------------------

    def _new_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root: ET.Element | None = None

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        for event, el in parser.read_events():
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self._root = el
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._root.remove(el)  # type: ignore[union-attr]  # the only child: O(1)
                    if el.tag == T_STREAM_ERROR:
                        self.stream_error = ",".join(c.tag.rsplit("}", 1)[-1] for c in el) or "?"
                    if self.on_stanza is not None and self._reader_task is not None:
                        self.on_stanza(el)
                    else:
                        self._pending.append(el)
                elif self._depth == 0:
                    self.closed_by_server.set()

    async def _next(self) -> ET.Element:
        assert self.reader is not None
        while not self._pending:
            data = await self.reader.read(65536)
            if not data:
                raise XMPPError(f"connection closed by server (stream error: {self.stream_error})")
            self._feed(data)
        el = self._pending.popleft()
        if el.tag == T_STREAM_ERROR:
            raise XMPPError(f"stream error: {self.stream_error}")
        return el

    def _open_stream(self) -> None:
        assert self.writer is not None
        self._new_parser()
        self.writer.write(
            f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' xml:lang='en' "
            f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode())

    async def _features(self) -> ET.Element:
        el = await self._next()
        if el.tag != T_FEATURES:
            raise XMPPError(f"expected <stream:features/>, got {el.tag}")
        return el

    # -- login ---------------------------------------------------------------------------

    async def login(self) -> None:
        """TCP, STARTTLS, SCRAM-SHA-256, bind.  Raises XMPPError on any failure."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self._open_stream()
        features = await self._features()
        if features.find(T_STARTTLS) is None:
            raise XMPPError("server offers no STARTTLS")
        self.writer.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
        el = await self._next()
        if el.tag != T_PROCEED:
            raise XMPPError(f"STARTTLS refused: {el.tag}")
        await self.writer.start_tls(self.ssl_context, server_hostname=self.domain)
        sslobj = self.writer.get_extra_info("ssl_object")
        self.tls_version = sslobj.version() if sslobj is not None else "?"
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            self.nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        self._open_stream()
        features = await self._features()
        mechs = features.find(T_MECHANISMS)
        names = [m.text for m in mechs] if mechs is not None else []
        if MECHANISM not in names:
            raise XMPPError(f"server does not offer {MECHANISM} (offers {names})")
        await self._scram()

        self._open_stream()
        features = await self._features()
        if features.find(T_BIND) is None:
            raise XMPPError("server offers no resource binding")
        self.writer.write(
            f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{self.resource}</resource>"
            f"</bind></iq>".encode())
        el = await self._next()
        jid = el.find(f"{T_BIND}/{T_JID}") if el.tag == T_IQ else None
        if el.get("type") != "result" or jid is None or not jid.text:
            raise XMPPError(f"bind failed: {ET.tostring(el)[:200]!r}")
        self.jid = jid.text

    async def _scram(self) -> None:
        assert self.writer is not None
        cnonce = base64.b64encode(os.urandom(18)).decode()
        gs2 = "n,,"
        client_first_bare = f"n={_saslname(self.user)},r={cnonce}"
        self.writer.write(
            f"<auth xmlns='{NS_SASL}' mechanism='{MECHANISM}'>"
            f"{base64.b64encode((gs2 + client_first_bare).encode()).decode()}</auth>".encode())
        el = await self._next()
        if el.tag != T_CHALLENGE:
            raise XMPPError(f"SCRAM: expected challenge, got {_sasl_failure(el)}")
        server_first = base64.b64decode(el.text or "").decode()
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(cnonce):
            raise XMPPError("SCRAM: server nonce does not extend ours")
        client_key, stored_key, server_key = self.scram.keys(self.user, self.password, salt, iterations)
        without_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={nonce}"
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        self.writer.write(
            f"<response xmlns='{NS_SASL}'>{base64.b64encode(final.encode()).decode()}</response>".encode())
        el = await self._next()
        if el.tag != T_SUCCESS:
            raise XMPPError(f"SCRAM: {_sasl_failure(el)}")
        expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))
        got = base64.b64decode(el.text) if el.text and el.text != "=" else b""
        if not hmac.compare_digest(got, expected):
            raise XMPPError("SCRAM: bad server signature")

    # -- the bound session ---------------------------------------------------------------

    def start_reading(self) -> None:
        """Hand every further stanza to ``on_stanza`` from a reader task."""
        for el in self._pending:
            if self.on_stanza is not None:
                self.on_stanza(el)
        self._pending.clear()
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self.reader is not None
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self._feed(data)
        except (ConnectionError, ssl.SSLError, ET.ParseError):
            pass
        finally:
            self.closed_by_server.set()

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def close(self, timeout: float = 5.0) -> None:
        """Close our stream, wait (bounded) for the server's, then drop the socket."""
        w = self.writer
        if w is None:
            return
        try:
            if not w.is_closing():
                w.write(b"</stream:stream>")
                if self._reader_task is None:
                    self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
                await asyncio.wait_for(self.closed_by_server.wait(), timeout)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            pass
        finally:
            w.transport.abort()
            if self._reader_task is not None:
                self._reader_task.cancel()
            self.writer = None


def _sasl_failure(el: ET.Element) -> str:
    if el.tag == T_FAILURE:
        conds = [c.tag.rsplit("}", 1)[-1] for c in el]
        return "failure " + ",".join(conds)
    return el.tag
