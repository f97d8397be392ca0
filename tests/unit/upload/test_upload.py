"""XEP-0363 HTTP upload (fedxmpp.upload) and the HTTP listener (fedxmpp.http):
slot requests over the router, PUT and GET through a real twisted.web channel on
StringTransport, quotas, expiry and account removal on a fake clock."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlsplit

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from fedxmpp import config
from fedxmpp.config import HttpConfig, UploadConfig
from fedxmpp.hooks import Hooks
from fedxmpp.http.listener import HttpService
from fedxmpp.router import Router
from fedxmpp.upload import slots
from fedxmpp.upload.service import CSP, UPLOAD, Upload
from fedxmpp.xml import ns
from fedxmpp.xml.jid import JID
from tests.unit.features.world import condition, payload, xml

ALICE = JID.parse("alice@example.test/phone")
BOB = JID.parse("bob@example.test/pc")
KEY = b"k" * 32


class Setup:
    def __init__(self, tmp_path, **changes) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.router = Router(("example.test",))
        self.delivered: list[domish.Element] = []
        self.router.set_local(lambda stanza, frm, to: self.delivered.append(stanza))
        self.hooks = Hooks()
        self.http = HttpService(HttpConfig(listen=("tcp:0",), public_url="https://files.example.test:5281/",
                                           trusted_proxies=("10.0.0.0/8",)))
        settings = dataclasses.replace(UploadConfig(domain="upload.example.test", max_size=1000,
                                                    storage_dir=tmp_path / "up", user_quota=2500), **changes)
        self.upload = Upload(settings, self.http, self.router, self.hooks, self.clock, KEY)
        self.upload.start()
        self.site = self.http.site()

    def iq(self, frm: JID, body: str) -> domish.Element:
        el = domish.Element((ns.CLIENT, "iq"))
        el["type"], el["id"] = "get", "q1"
        el.addChild(xml(body))
        before = len(self.delivered)
        self.router.route(el, frm, JID.parse("upload.example.test"))
        (reply,) = self.delivered[before:]
        return reply

    def slot(self, frm: JID = ALICE, name: str = "cat.png", size: int = 10, type: str = "image/png"):
        reply = self.iq(frm, f"<request xmlns='{UPLOAD}' filename='{name}' size='{size}' content-type='{type}'/>")
        assert reply["type"] == "result", reply.toXml()
        put, get = payload(reply).elements()
        return put["url"], get["url"]

    def http_request(self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
                     length: int | None = None) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", "Host: files.example.test"]
        lines += [f"Content-Length: {len(body) if length is None else length}"] if method == "PUT" else []
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        channel.makeConnection(transport)
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        while transport.producer is not None and not transport.streaming:
            transport.producer.resumeProducing()
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        heads = {}
        for line in header_lines:
            k, _, v = line.partition(": ")
            heads[k.lower()] = v
        if heads.get("transfer-encoding") == "chunked":
            rest = _unchunk(rest)
        return int(status_line.split()[1]), heads, rest


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_text, _, data = data.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def test_disco_advertises_upload_and_max_size(tmp_path):
    s = Setup(tmp_path)
    info = payload(s.iq(ALICE, f"<query xmlns='{ns.DISCO_INFO}'/>"))
    identity = next(c for c in info.elements() if c.name == "identity")
    assert (identity["category"], identity["type"]) == ("store", "file")
    assert UPLOAD in [c["var"] for c in info.elements() if c.name == "feature"]
    form = next(c for c in info.elements() if c.name == "x")
    values = {f["var"]: str(next(f.elements())) for f in form.elements()}
    assert values == {"FORM_TYPE": UPLOAD, "max-file-size": "1000"}


def test_put_then_get_byte_for_byte_with_safe_headers(tmp_path):
    """The slot's PUT stores the body (201); GET returns it with its type,
    Content-Disposition attachment, nosniff and a CSP that runs nothing."""
    s = Setup(tmp_path)
    put, get = s.slot(name="dir/../evil&lt;script&gt;.html", size=11, type="text/html")
    assert get.startswith("https://files.example.test:5281/upload/") and "/" not in get.rsplit("/", 1)[1]
    assert put.startswith(get + "?t=")
    status, _, _ = s.http_request("PUT", put, b"<b>hi</b>\n!", {"Content-Type": "text/html"})
    assert status == 201
    status, heads, body = s.http_request("GET", get)
    assert status == 200 and body == b"<b>hi</b>\n!"
    assert heads["content-type"] == "text/html"
    assert heads["content-disposition"].startswith("attachment; filename*=UTF-8''evil%3Cscript%3E.html")
    assert heads["content-security-policy"] == CSP and heads["x-content-type-options"] == "nosniff"
    meta = json.loads(next((tmp_path / "up").glob("*/meta.json")).read_text())
    assert meta["owner"] == "alice@example.test" and meta["size"] == 11


def test_names_with_percent_and_unicode_round_trip(tmp_path):
    s = Setup(tmp_path)
    put, get = s.slot(name="100%25 sûr.txt", size=2, type="text/plain")
    assert s.http_request("PUT", put, b"ok", {"Content-Type": "text/plain"})[0] == 201
    status, heads, body = s.http_request("GET", get)
    assert status == 200 and body == b"ok"
    assert heads["content-disposition"] == "attachment; filename*=UTF-8''100%2525%20s%C3%BBr.txt"


def test_put_refusals(tmp_path):
    """Wrong size, wrong type, a forged or altered token, an expired slot: refused,
    nothing stored; a used slot cannot be overwritten (409)."""
    s = Setup(tmp_path)
    put, get = s.slot(size=5)
    assert s.http_request("PUT", put, b"123456", {"Content-Type": "image/png"})[0] == 400
    assert s.http_request("PUT", put, b"12345", {"Content-Type": "text/html"})[0] == 400
    forged = slots.sign(b"x" * 32, slots.Slot("A" * 22, "cat.png", 5, "image/png", "alice@example.test", 2**40))
    assert s.http_request("PUT", get.rsplit("/", 2)[0] + f"/{'A' * 22}/cat.png?t={forged}", b"12345",
                          {"Content-Type": "image/png"})[0] == 403
    other_name = put.replace("cat.png?", "dog.png?")
    assert s.http_request("PUT", other_name, b"12345", {"Content-Type": "image/png"})[0] == 403
    assert s.http_request("GET", get)[0] == 404
    assert s.http_request("PUT", put, b"12345", {"Content-Type": "image/png"})[0] == 201
    assert s.http_request("PUT", put, b"54321", {"Content-Type": "image/png"})[0] == 409
    assert s.http_request("GET", get)[2] == b"12345"
    late_put, _ = s.slot(size=5)
    s.clock.advance(301)
    assert s.http_request("PUT", late_put, b"12345", {"Content-Type": "image/png"})[0] == 403


def test_cut_short_upload_frees_the_slot(tmp_path):
    """A PUT whose connection drops mid-body leaves nothing behind."""
    s = Setup(tmp_path)
    put, get = s.slot(size=10)
    parts = urlsplit(put)
    channel = s.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                         "Content-Type: image/png\r\n\r\n12345".encode())
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure
    channel.connectionLost(Failure(ConnectionLost()))
    assert list((tmp_path / "up").iterdir()) == [] and s.upload.store.used() == 0


def test_slot_errors(tmp_path):
    """Too large: <not-acceptable/> with <file-too-large><max-file-size/>; over the
    user's quota: <resource-constraint/>; missing attributes: <bad-request/>;
    another server's user: <forbidden/>."""
    s = Setup(tmp_path)
    reply = s.iq(ALICE, f"<request xmlns='{UPLOAD}' filename='big' size='1001' content-type='image/png'/>")
    assert condition(reply) == "not-acceptable"
    error = next(c for c in reply.elements() if c.name == "error")
    too_large = next(c for c in error.elements() if c.uri == UPLOAD)
    assert too_large.name == "file-too-large" and str(next(too_large.elements())) == "1000"
    assert condition(s.iq(ALICE, f"<request xmlns='{UPLOAD}' size='10'/>")) == "bad-request"
    for i in range(2):
        put, _ = s.slot(name=f"f{i}", size=1000, type="application/octet-stream")
        assert s.http_request("PUT", put, b"x" * 1000, {"Content-Type": "application/octet-stream"})[0] == 201
    reply = s.iq(ALICE, f"<request xmlns='{UPLOAD}' filename='more' size='600' content-type='image/png'/>")
    assert condition(reply) == "resource-constraint"
    assert s.slot(BOB, size=1000)  # bob's quota is his own
    remote = JID.parse("mallory@remote.test/x")
    sent: list[domish.Element] = []
    s.router.set_default(lambda stanza, frm, to: sent.append(stanza))
    el = domish.Element((ns.CLIENT, "iq"))
    el["type"], el["id"] = "get", "r"
    el.addChild(xml(f"<request xmlns='{UPLOAD}' filename='a' size='1'/>"))
    s.router.route(el, remote, JID.parse("upload.example.test"))
    assert condition(sent[0]) == "forbidden"


def test_expiry_and_account_removal(tmp_path):
    """Files older than expire_days go at the hourly job; an account's removal takes
    its files with it; the index is rebuilt from disk at start."""
    s = Setup(tmp_path, expire_days=1)
    put, old = s.slot(size=3)
    assert s.http_request("PUT", put, b"old", {"Content-Type": "image/png"})[0] == 201
    s.clock.advance(20 * 3600)
    put, new = s.slot(size=3)
    assert s.http_request("PUT", put, b"new", {"Content-Type": "image/png"})[0] == 201
    put, bobs = s.slot(BOB, size=3)
    assert s.http_request("PUT", put, b"bob", {"Content-Type": "image/png"})[0] == 201
    s.clock.advance(5 * 3600)
    assert s.http_request("GET", old)[0] == 404 and s.http_request("GET", new)[0] == 200
    s.hooks.fire("account/removed", BOB.bare)
    assert s.http_request("GET", bobs)[0] == 404
    again = Upload(s.upload.settings, HttpService(s.http.settings), Router(("example.test",)), Hooks(), s.clock, KEY)
    again.store.load()
    assert [f.owner for f in again.store.files.values()] == ["alice@example.test"]


def test_client_address_believes_only_trusted_proxies(tmp_path):
    s = Setup(tmp_path)

    class R:
        def __init__(self, peer, forwarded):
            from twisted.web.http_headers import Headers
            self.peer = IPv4Address("TCP", peer, 1)
            self.requestHeaders = Headers({b"x-forwarded-for": [forwarded]} if forwarded else {})

        def getClientAddress(self):
            return self.peer

    assert s.http.client_address(R("192.0.2.1", b"203.0.113.9")) == "192.0.2.1"
    assert s.http.client_address(R("10.1.1.1", b"203.0.113.9, 10.2.2.2")) == "203.0.113.9"


def test_safe_names():
    assert slots.safe_name("../../etc/passwd") == "passwd"
    assert slots.safe_name("a\\b\\..") == "file"
    assert slots.safe_name("x\u0000y\u202e.txt") == "xy.txt"
    assert len(slots.safe_name("é" * 300).encode()) <= 200


# -- configuration ----------------------------------------------------------------------


def load(tmp_path, text: str) -> config.Config:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return config.load(path)


def test_config(tmp_path):
    cfg = load(tmp_path, "[http]\nlisten = ['tcp:5280']\npublic_url = 'https://example.test'\n"
                         "[upload]\ndomain = 'upload.example.test'\n[server]\ndata_dir = 'd'\n")
    assert cfg.upload.storage_dir == tmp_path / "d" / "upload"


@pytest.mark.parametrize("text,problem", [
    ("[upload]\ndomain = 'upload.example.test'\n", "upload.domain: needs the HTTP listener"),
    ("[http]\npublic_url = 'ftp://x'\n", "http.public_url:"),
    ("[http]\ntrusted_proxies = ['nope']\n", "http.trusted_proxies:"),
    ("[upload]\nmax_size = 0\n", "upload.max_size:"),
    ("[upload]\nslot_lifetime = 1\n", "upload.slot_lifetime:"),
])
def test_config_errors(tmp_path, text, problem):
    with pytest.raises(config.ConfigError) as err:
        load(tmp_path, text)
    assert problem in str(err.value) and "\n" not in str(err.value)
