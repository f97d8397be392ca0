"""Write a XEP-0227 file of N users, each with R contacts, for ``fedxmpp import``.

Usage (from the repository root)::

    .venv/bin/python bench/make_pie.py --users 5000 --contacts 50 --out /tmp/bench-pie.xml
    .venv/bin/fedxmpp --config CONFIG import /tmp/bench-pie.xml

Users are ``u00000@bench.test``... with the passwords of bench/run.py
(``bench-pw-00000``...).  Each user's roster holds its R nearest neighbours on a
ring (R/2 on each side), subscription 'both' on both sides, in the group
``ring``, so every user sees R contacts' presence.  The file carries SCRAM-SHA-1
and -SHA-256 keys (derived here, over every core, with --iterations), so the
import itself does no PBKDF2; --plain writes the passwords instead, and the
import hashes them.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedxmpp.cli import derive_parallel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--contacts", type=int, default=50, help="roster size (even)")
    parser.add_argument("--domain", default="bench.test")
    parser.add_argument("--iterations", type=int, default=4096, help="PBKDF2 iterations of the SCRAM keys")
    parser.add_argument("--plain", action="store_true", help="write passwords, not SCRAM keys")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    n, half, domain = args.users, args.contacts // 2, args.domain
    if not 0 < 2 * half < n:
        parser.error("--contacts must be even, positive and below --users")
    started = time.monotonic()
    passwords = [f"bench-pw-{i:05d}" for i in range(n)]
    creds = [] if args.plain else derive_parallel(passwords, args.iterations)
    mechanism = {"sha-1": "SCRAM-SHA-1", "sha-256": "SCRAM-SHA-256"}

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    with open(args.out, "w", encoding="utf-8") as out:
        out.write(f"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>"
                  f"<host jid='{domain}'>\n")
        for i in range(n):
            if args.plain:
                out.write(f"<user name='u{i:05d}' password='{passwords[i]}'>")
            else:
                out.write(f"<user name='u{i:05d}'>")
                for name, c in creds[i].items():
                    out.write(f"<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='{mechanism[name]}'>"
                              f"<iter-count>{c.iterations}</iter-count><salt>{b64(c.salt)}</salt>"
                              f"<server-key>{b64(c.server_key)}</server-key>"
                              f"<stored-key>{b64(c.stored_key)}</stored-key></scram-credentials>")
            out.write("<query xmlns='jabber:iq:roster'>")
            for d in range(1, half + 1):
                for j in ((i + d) % n, (i - d) % n):
                    out.write(f"<item jid='u{j:05d}@{domain}' subscription='both'><group>ring</group></item>")
            out.write("</query></user>\n")
        out.write("</host></server-data>\n")
    print(f"wrote {n} users x {2 * half} contacts to {args.out} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
