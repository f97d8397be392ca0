"""XEP-0363 HTTP upload against the real server: a slixmpp client finds the upload
service in disco#items, asks for slots over XMPP, and puts and gets files over the
HTTP listener with a plain HTTP client (http.client), byte for byte; and the
error paths (too large, wrong size, wrong type, a used slot, an altered token)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, free_port, logged_in, run

UPLOAD = "urn:xmpp:http:upload:0"
DOMAIN = "upload.example.test"
USERS = {"ulla@example.test": "ulla-secret"}
MAX_SIZE = 64 * 1024 * 1024
BIG = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    http_port, https_port = free_port(), free_port()
    srv = ServerProcess(tmp_path_factory.mktemp("upload"), overrides={
        "http": {"listen": [f"tcp:{http_port}:interface=127.0.0.1"],
                 "tls_listen": [f"tcp:{https_port}:interface=127.0.0.1"],
                 "public_url": f"http://127.0.0.1:{http_port}"},
        "upload": {"domain": DOMAIN, "max_size": MAX_SIZE, "user_quota": 200 * 1024 * 1024}})
    srv.http_port, srv.https_port = http_port, https_port
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_tail(120)


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


async def slot(client, name: str, size: int, content_type: str):
    """(PUT URL, GET URL) or the error condition's tag and the error element."""
    from slixmpp.exceptions import IqError
    iq = client.xmpp.make_iq_get(ito=DOMAIN)
    iq.xml.append(ET.fromstring(f"<request xmlns='{UPLOAD}' filename='{name}' size='{size}' "
                                f"content-type='{content_type}'/>"))
    try:
        result = await iq.send(timeout=10)
    except IqError as e:
        return e.iq["error"]["condition"], e.iq.xml.find("{jabber:client}error")
    found = result.xml.find(f"{{{UPLOAD}}}slot")
    return found.find(f"{{{UPLOAD}}}put").get("url"), found.find(f"{{{UPLOAD}}}get").get("url")


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise HarnessError("no VmHWM")


def test_upload_and_download_byte_for_byte(upload_server):
    """disco#items lists the upload domain, whose disco#info gives max-file-size; a
    40 MB file goes up with PUT (201) and comes back the same with GET; the server
    writes it to disk as it arrives (its peak RSS grows by less than 20 MB)."""
    data = random.Random(363).randbytes(BIG)
    pid = upload_server.proc.pid
    peak_before = _peak_rss_kb(pid)

    async def scenario():
        async with logged_in(upload_server, "ulla@example.test/up", USERS["ulla@example.test"],
                             plugins={"xep_0030": {}}) as ulla:
            items = await ulla.xmpp.plugin["xep_0030"].get_items(jid="example.test", timeout=10)
            assert [i[0] for i in items["disco_items"]["items"]] == [DOMAIN]
            info = await ulla.xmpp.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=10)
            assert UPLOAD in info["disco_info"]["features"]
            form = info.xml.find(".//{jabber:x:data}x")
            sizes = [f.find("{jabber:x:data}value").text for f in form if f.get("var") == "max-file-size"]
            assert sizes == [str(MAX_SIZE)]
            return await slot(ulla, "holiday video.bin", BIG, "application/octet-stream")

    put, get = run(scenario())
    status, _, _ = request("PUT", put, data, {"Content-Type": "application/octet-stream"})
    assert status == 201
    status, headers, body = request("GET", get)
    assert status == 200 and len(body) == BIG
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''holiday%20video.bin"
    growth_mb = (_peak_rss_kb(pid) - peak_before) / 1024
    print(f"\nserver peak RSS grew {growth_mb:.1f} MB for a 40 MB upload and download")
    assert growth_mb < 20


def test_upload_errors(upload_server):
    """Too large: <not-acceptable/> with <file-too-large/> and <max-file-size/>; a PUT
    with another size or type: 400; an altered token: 403; a used slot: 409;
    an uploaded HTML page is served as an attachment with a CSP that runs nothing."""
    async def scenario():
        async with logged_in(upload_server, "ulla@example.test/err", USERS["ulla@example.test"]) as ulla:
            condition, error = await slot(ulla, "huge.iso", MAX_SIZE + 1, "application/octet-stream")
            assert condition == "not-acceptable"
            too_large = error.find(f"{{{UPLOAD}}}file-too-large")
            assert too_large.find(f"{{{UPLOAD}}}max-file-size").text == str(MAX_SIZE)
            return await slot(ulla, "page.html", 21, "text/html")

    put, get = run(scenario())
    page = b"<script>alert(1)</script>"[:21]
    assert request("PUT", put, page + b"x", {"Content-Type": "text/html"})[0] == 400
    assert request("PUT", put, page, {"Content-Type": "image/svg+xml"})[0] == 400
    assert request("PUT", put[:-3] + ("AAA" if not put.endswith("AAA") else "BBB"), page,
                   {"Content-Type": "text/html"})[0] == 403
    assert request("GET", get)[0] == 404
    assert request("PUT", put, page, {"Content-Type": "text/html"})[0] == 201
    assert request("PUT", put, page, {"Content-Type": "text/html"})[0] == 409
    status, headers, body = request("GET", get)
    assert status == 200 and body == page
    assert headers["content-disposition"].startswith("attachment;")
    assert "default-src 'none'" in headers["content-security-policy"] and "sandbox" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert request("GET", get.rsplit("/", 1)[0] + "/..%2F..%2Fetc%2Fpasswd")[0] == 404


def test_https_listener_serves_with_the_domains_certificate(upload_server):
    """tls_listen: TLS with the hosted domain's certificate chosen by SNI (verified
    against it), then HTTP; an unknown path is a 404."""
    import socket
    import ssl
    context = ssl.create_default_context(cafile=str(upload_server.cert_path("example.test")))
    with socket.create_connection(("127.0.0.1", upload_server.https_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="example.test") as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")
        tls.sendall(b"GET /upload/nothing/here HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 404 ")
