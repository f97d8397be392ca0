"""fedxmpp HTTP upload benchmark (XEP-0363): N users upload a file of S MB each,
all at once, through the server's HTTP listener.

Usage (from the repository root)::

    .venv/bin/python bench/upload.py [--uploads 10] [--size-mb 100]

It starts its own server (as bench/run.py does) with ``[http]`` on a free
loopback port and ``[upload]`` at ``upload.bench.test``, logs N clients in with
the lean client of ``bench/xmppload.py``, asks each for a slot, then PUTs all
files concurrently over plain HTTP from asyncio, sampling the server's VmRSS
every 50 ms.  It reports the aggregate throughput (MB/s, client-side wall time)
and the server's RSS before and at its peak, and checks each stored file's size.
A benchmark: it prints figures and asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serverproc import DOMAIN, BenchServer, free_port, venv_bin  # noqa: E402
from xmppload import Client, ScramCache, make_ssl_context  # noqa: E402

UPLOAD_NS = "urn:xmpp:http:upload:0"
UPLOAD_DOMAIN = f"upload.{DOMAIN}"
CHUNK = 256 * 1024


async def request_slot(client: Client, replies: dict[str, asyncio.Future], size: int) -> str:
    future = asyncio.get_running_loop().create_future()
    replies["slot1"] = future
    client.send(f"<iq type='get' id='slot1' to='{UPLOAD_DOMAIN}'><request xmlns='{UPLOAD_NS}' filename='bench.bin' "
                f"size='{size}' content-type='application/octet-stream'/></iq>".encode())
    reply = await asyncio.wait_for(future, 30)
    put = reply.find(f"{{{UPLOAD_NS}}}slot/{{{UPLOAD_NS}}}put")
    if put is None:
        raise RuntimeError(f"no slot: {ET.tostring(reply)[:300]!r}")
    return put.get("url")


async def put_file(url: str, size: int) -> int:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Length: {size}\r\n"
                 "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode())
    block = bytes(range(256)) * (CHUNK // 256)
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        writer.write(block[:n])
        await writer.drain()
        sent += n
    status = await asyncio.wait_for(reader.readline(), 120)
    writer.close()
    return int(status.split()[1])


async def amain(args: argparse.Namespace, server: BenchServer, http_port: int) -> None:
    size = args.size_mb * 1024 * 1024
    ssl_context = make_ssl_context(str(server.cert_file))
    scram = ScramCache()
    clients, slots = [], []
    for i in range(args.uploads):
        replies: dict[str, asyncio.Future] = {}

        def on_stanza(el: ET.Element, replies: dict[str, asyncio.Future] = replies) -> None:
            future = replies.pop(el.get("id", ""), None)
            if future is not None and not future.done():
                future.set_result(el)

        client = Client("127.0.0.1", server.port, DOMAIN, f"u{i}", f"pw{i}", ssl_context=ssl_context, scram=scram,
                        on_stanza=on_stanza)
        await client.login()
        client.start_reading()
        clients.append(client)
        slots.append(await request_slot(client, replies, size))
    rss_before = server.rss_kib()
    peak = rss_before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_kib())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    statuses = await asyncio.gather(*(put_file(url, size) for url in slots))
    elapsed = time.perf_counter() - started
    done.set()
    await sampler
    stored = sorted(p.stat().st_size for p in (server.data_dir / "upload").glob("*/data"))
    print(f"{args.uploads} concurrent uploads of {args.size_mb} MB: statuses {sorted(set(statuses))}, "
          f"{elapsed:.1f} s, {args.uploads * args.size_mb / elapsed:.1f} MB/s in total")
    print(f"stored files: {len(stored)}, all {size} bytes: {stored == [size] * args.uploads}")
    print(f"server RSS: {rss_before / 1024:.1f} MB before, {peak / 1024:.1f} MB at peak "
          f"(+{(peak - rss_before) / 1024:.1f} MB)")
    for client in clients:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    server = BenchServer(venv_bin(), keep=args.keep)
    http_port = free_port()
    with open(server.config, "a") as f:
        f.write(f"""
[http]
listen = ["tcp:{http_port}:interface=127.0.0.1"]
public_url = "http://127.0.0.1:{http_port}"

[upload]
domain = "{UPLOAD_DOMAIN}"
max_size = {args.size_mb * 1024 * 1024}
user_quota = 0
""")
    try:
        server.provision([(f"u{i}", f"pw{i}") for i in range(args.uploads)])
        server.start()
        asyncio.run(amain(args, server, http_port))
    finally:
        print(f"server stop: {server.stop()[0]}")
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
