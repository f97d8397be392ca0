"""A stand-in for an SMS provider's HTTP API, to try the gateway without an account.

``POST /messages`` with JSON {"from", "to", "text"} is answered 202 and appended,
one JSON object per line, to ``--record`` (or printed); a recipient named with
``--fail-to`` is answered 503 instead, to see the gateway report the failure::

    python -m examples.sms_gateway.fake_provider --listen tcp:8025:interface=127.0.0.1

Inbound SMS are simulated by POSTing to the gateway's webhook yourself, e.g.::

    curl -d '{"from": "+15551234567", "to": "+15550001111", "text": "hi"}' http://127.0.0.1:8026/inbound
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site


class Messages(Resource):
    isLeaf = True

    def __init__(self, record: str | None, fail_to: set[str]) -> None:
        super().__init__()
        self.record = record
        self.fail_to = fail_to

    def render_POST(self, request: Any) -> bytes:
        if request.path != b"/messages":
            request.setResponseCode(404)
            return b"not found\n"
        try:
            data = json.loads(request.content.read(65536))
            entry = {"from": data["from"], "to": data["to"], "text": data["text"],
                     "authorization": (request.getHeader("authorization") or "")}
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            return b"bad request\n"
        if entry["to"] in self.fail_to:
            request.setResponseCode(503)
            return b"temporarily unavailable\n"
        line = json.dumps(entry)
        if self.record:
            with open(self.record, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            print(line, flush=True)
        request.setResponseCode(202)
        return b'{"status": "queued"}\n'


async def run(reactor: Any, argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser(prog="fake_provider")
    p.add_argument("--listen", default="tcp:8025:interface=127.0.0.1")
    p.add_argument("--record", help="append accepted messages here (JSON lines) instead of printing them")
    p.add_argument("--fail-to", action="append", default=[], help="answer 503 for this recipient")
    args = p.parse_args(argv)
    port = await serverFromString(reactor, args.listen).listen(Site(Messages(args.record, set(args.fail_to))))
    print(f"fake SMS provider listening on {port.getHost().port}", flush=True)
    await defer.Deferred()  # until the reactor stops


def main() -> None:
    from twisted.internet import task

    argv = sys.argv[1:]
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, argv)))


if __name__ == "__main__":
    main()
