"""XEP-0065 SOCKS5 bytestreams through the server's proxy (``[proxy65]``), end to end:
two slixmpp clients with slixmpp's own XEP-0065 plugin find the proxy in the
server's disco#items, negotiate a stream and move a 50 MB file through it, checked
byte for byte; and the error paths with raw SOCKS5 sockets."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, free_port, logged_in, run, stanza_error

PROXY = "proxy.example.test"
BYTESTREAMS = "http://jabber.org/protocol/bytestreams"
USERS = {"sender@example.test": "sender-secret", "receiver@example.test": "receiver-secret",
         "intruder@example.test": "intruder-secret"}
FILE_SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024
TRANSFER_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def proxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    socks_port = free_port()
    srv = ServerProcess(tmp_path_factory.mktemp("proxy65"), overrides={"proxy65": {
        "domain": PROXY, "listen": [f"tcp:{socks_port}:interface=127.0.0.1"], "host": "127.0.0.1", "rate": 0}})
    srv.socks_port = socks_port
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_tail(120)


def digest(sid: str, requester: str, target: str) -> str:
    return hashlib.sha1((sid + requester + target).encode()).hexdigest()


async def socks_connect(port: int, dst: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A raw SOCKS5 CONNECT to *dst*; (reader, writer, the proxy's reply)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await asyncio.wait_for(reader.readexactly(2), 10) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03" + bytes((len(dst),)) + dst.encode() + b"\x00\x00")
    reply = await asyncio.wait_for(reader.readexactly(5 + len(dst) + 2), 10)
    return reader, writer, reply


async def activate(client, sid: str, target: str):
    iq = client.xmpp.make_iq_set(ito=PROXY)
    iq.xml.append(ET.fromstring(f"<query xmlns='{BYTESTREAMS}' sid='{sid}'><activate>{target}</activate></query>"))
    from slixmpp.exceptions import IqError
    try:
        return await iq.send(timeout=10)
    except IqError as e:
        return e.iq


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise HarnessError("no VmHWM in /proc/PID/status")


def test_fifty_megabytes_between_two_slixmpp_clients(proxy_server):
    """sender discovers the proxy (disco#items of its server, identity
    proxy/bytestreams, streamhost 127.0.0.1:port), offers it to receiver, which
    connects through it; sender activates and writes 50 MB of random bytes in 64 KB
    chunks with slixmpp's flow control; receiver gets exactly those bytes.
    Receiver stops reading for a while after 5 MB: the proxy must hold the sender
    back rather than take the rest of the file into memory, so the server's peak
    RSS grows by less than 20 MB."""
    data = random.Random(65).randbytes(FILE_SIZE)
    expected = hashlib.sha256(data).hexdigest()
    pid = proxy_server.proc.pid
    peak_before = _peak_rss_kb(pid)

    async def scenario():
        async with logged_in(proxy_server, "sender@example.test/files", USERS["sender@example.test"],
                             plugins={"xep_0030": {}, "xep_0065": {}}) as sender, \
                logged_in(proxy_server, "receiver@example.test/files", USERS["receiver@example.test"],
                          plugins={"xep_0030": {}, "xep_0065": {"auto_accept": True}}) as receiver:
            received = hashlib.sha256()
            got = {"bytes": 0}
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            streams = []
            stalled = {"done": False}

            def on_data(chunk: bytes) -> None:
                received.update(chunk)
                got["bytes"] += len(chunk)
                if got["bytes"] >= 5 * 1024 * 1024 and not stalled["done"]:
                    stalled["done"] = True
                    streams[0].transport.pause_reading()
                    loop.call_later(3.0, streams[0].transport.resume_reading)
                if got["bytes"] >= FILE_SIZE and not done.done():
                    done.set_result(None)

            receiver.xmpp.add_event_handler("socks5_stream", streams.append)
            receiver.xmpp.add_event_handler("socks5_data", on_data)
            s5 = sender.xmpp.plugin["xep_0065"]
            proxies = await s5.discover_proxies(timeout=10)
            assert {str(j): hp for j, hp in proxies.items()} == {PROXY: ("127.0.0.1", str(proxy_server.socks_port))}
            sock = await s5.handshake(receiver.jid.full, timeout=10)
            assert sock is not None, "no stream through the proxy"
            started = time.monotonic()
            view = memoryview(data)
            for offset in range(0, FILE_SIZE, CHUNK):
                await sock.write(view[offset:offset + CHUNK].tobytes())
            await asyncio.wait_for(done, TRANSFER_TIMEOUT)
            elapsed = time.monotonic() - started
            sock.transport.close()
            assert stalled["done"] and len(streams) == 1
            assert got["bytes"] == FILE_SIZE
            assert received.hexdigest() == expected
            return elapsed

    elapsed = run(scenario(), timeout=TRANSFER_TIMEOUT + 60)
    growth_mb = (_peak_rss_kb(pid) - peak_before) / 1024
    print(f"\n50 MB through the proxy in {elapsed:.1f}s (a 3 s stall included); "
          f"server peak RSS grew {growth_mb:.1f} MB")
    assert growth_mb < 20
    proxy_server.wait_log(r"SOCKS5 stream of sender@example.test ended after 52428800 bytes", timeout=20)


def test_raw_socks5_activation_rules(proxy_server):
    """Raw SOCKS5 clients: activation of a hash nobody connected with, or with only
    one end connected: <item-not-found/>; by a third party (intruder) naming the
    sid and target: <item-not-found/> and nothing flows; then the requester the
    hash names activates and bytes flow both ways; a third connection for an
    active stream gets SOCKS5 reply 0x02 (not allowed)."""
    port = proxy_server.socks_port

    async def scenario():
        async with logged_in(proxy_server, "sender@example.test/raw", USERS["sender@example.test"]) as sender, \
                logged_in(proxy_server, "intruder@example.test/raw", USERS["intruder@example.test"]) as intruder:
            target = "receiver@example.test/raw"
            requester = sender.jid.full
            assert stanza_error((await activate(sender, "nobody", target)).xml) == "item-not-found"
            dst = digest("raw1", requester, target)
            t_reader, t_writer, reply = await socks_connect(port, dst)
            assert reply[:2] == b"\x05\x00" and reply[5:-2] == dst.encode()
            assert stanza_error((await activate(sender, "raw1", target)).xml) == "item-not-found"
            i_reader, i_writer, reply = await socks_connect(port, dst)
            assert reply[:2] == b"\x05\x00"
            assert stanza_error((await activate(intruder, "raw1", target)).xml) == "item-not-found"
            i_writer.write(b"too early")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(t_reader.read(100), 0.5)
            result = await activate(sender, "raw1", target)
            assert result["type"] == "result"
            assert await asyncio.wait_for(t_reader.readexactly(9), 10) == b"too early"
            t_writer.write(b"and back")
            assert await asyncio.wait_for(i_reader.readexactly(8), 10) == b"and back"
            x_reader, x_writer, reply = await socks_connect(port, dst)
            assert reply[:2] == b"\x05\x02"
            assert stanza_error((await activate(sender, "raw1", target)).xml) == "not-allowed"
            i_writer.close()
            assert await asyncio.wait_for(t_reader.read(), 10) == b""
            for w in (t_writer, x_writer):
                w.close()

    run(scenario())


def test_socks5_without_acceptable_method_is_refused(proxy_server):
    async def scenario():
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_server.socks_port)
        writer.write(b"\x05\x01\x02")
        assert await asyncio.wait_for(reader.read(), 10) == b"\x05\xff"
        writer.close()

    run(scenario())


def test_proxy_is_listed_and_described(proxy_server):
    """disco#items of the domain lists the proxy; its disco#info says proxy/bytestreams."""
    async def scenario():
        async with logged_in(proxy_server, "receiver@example.test/disco", USERS["receiver@example.test"],
                             plugins={"xep_0030": {}}) as c:
            items = await c.xmpp.plugin["xep_0030"].get_items(jid="example.test", timeout=10)
            assert [i[0] for i in items["disco_items"]["items"]] == [PROXY]
            info = await c.xmpp.plugin["xep_0030"].get_info(jid=PROXY, timeout=10)
            assert ("proxy", "bytestreams") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}
            assert BYTESTREAMS in info["disco_info"]["features"]

    run(scenario())
