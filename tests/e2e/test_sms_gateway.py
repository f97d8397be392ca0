"""The example SMS gateway as a separate process, between the real server and a
stand-in SMS provider (twisted.web, also a separate process)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import (
    IO_TIMEOUT, HarnessError, ServerProcess, free_port, logged_in, run, server_env, wait_for,
)

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "sms.example.test"
USERS = {"sasha@example.test": "sasha-secret", "sam@example.test": "sam-secret"}
SASHA_NUMBER = "+15550001111"
FAILING = "+15550000503"


class Process:
    """A Python child process with its output in a file; stopped by PID, bounded."""

    def __init__(self, name: str, root: Path, *args: str) -> None:
        self.log = root / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=server_env())

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_text(self, needle: str, timeout: float = IO_TIMEOUT) -> None:
        try:
            wait_for(lambda: needle in self.text() or self.proc.poll() is not None, timeout, what=needle)
        except HarnessError:
            pass
        if needle not in self.text():
            raise HarnessError(f"{self.log.name}: no {needle!r}:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def sms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("sms")
    (root / "sms.secret").write_text("sms-component-secret\n")
    (root / "api.token").write_text("provider-token\n")
    component_port, api_port, webhook_port = free_port(), free_port(), free_port()
    srv = ServerProcess(root / "server", overrides={"components": {
        "listen": [f"tcp:{component_port}:interface=127.0.0.1"],
        "component": [{"domain": DOMAIN, "secret_file": str(root / "sms.secret"), "name": "SMS"}]}})
    srv.import_users(USERS)
    srv.start()
    record = root / "sent.jsonl"
    started: list[Process] = []
    try:
        provider = Process("provider", root, "-m", "examples.sms_gateway.fake_provider",
                           "--listen", f"tcp:{api_port}:interface=127.0.0.1", "--record", str(record),
                           "--fail-to", FAILING)
        started.append(provider)
        provider.wait_for_text("listening")
        gateway = Process("gateway", root, "-m", "examples.sms_gateway.gateway", "--domain", DOMAIN,
                          "--secret-file", str(root / "sms.secret"), "--server", f"127.0.0.1:{component_port}",
                          "--api", f"http://127.0.0.1:{api_port}", "--api-token-file", str(root / "api.token"),
                          "--webhook", f"tcp:{webhook_port}:interface=127.0.0.1",
                          "--user", f"sasha@example.test={SASHA_NUMBER}")
        started.append(gateway)
        gateway.wait_for_text("attached to the XMPP server")
        srv.wait_log(r"Component sms\.example\.test connected")
        yield {"server": srv, "record": record, "webhook": f"http://127.0.0.1:{webhook_port}/inbound",
               "gateway": gateway}
    finally:
        for p in reversed(started):
            p.stop()
        srv.stop()
    assert "Traceback" not in "".join(p.text() for p in started), "a gateway process logged a traceback"


def _sent(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def _post(url: str, payload: dict, token: str = "provider-token") -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sms_both_ways(sms):
    """A user's message to +number@sms.example.test reaches the provider's API as JSON
    from the user's number (with the API token); an SMS the provider posts to the
    gateway's webhook reaches the user as a chat message from +sender@sms.example.test."""
    async def scenario():
        async with logged_in(sms["server"], "sasha@example.test/phone", USERS["sasha@example.test"]) as sasha:
            await sasha.available()
            sasha.xmpp.send_message(mto="+15551234567@sms.example.test", mbody="running late", mtype="chat")
            sent = await _poll(lambda: _sent(sms["record"]))
            assert sent == [{"from": SASHA_NUMBER, "to": "+15551234567", "text": "running late",
                             "authorization": "Bearer provider-token"}]
            status = await _in_thread(_post, sms["webhook"], {"from": "+15551234567", "to": SASHA_NUMBER,
                                                              "text": "no problem"})
            assert status == 202
            msg = await sasha.next_message()
            assert (msg["body"], msg["from"].full, msg["type"]) == ("no problem", "+15551234567@sms.example.test",
                                                                    "chat")
    run(scenario())


def test_failures_come_back_as_errors(sms):
    """The provider refusing (503), an unregistered user and an address that is not a
    number each come back to the user as a stanza error; nothing is silently lost."""
    async def scenario():
        async with logged_in(sms["server"], "sasha@example.test/f", USERS["sasha@example.test"]) as sasha, \
                logged_in(sms["server"], "sam@example.test/f", USERS["sam@example.test"]) as sam:
            for client, to, condition in ((sasha, f"{FAILING}@sms.example.test", "service-unavailable"),
                                          (sam, "+15551234567@sms.example.test", "registration-required"),
                                          (sasha, "pizza@sms.example.test", "item-not-found")):
                client.xmpp.send_message(mto=to, mbody="hello?")
                error = await client.next_message()
                assert error["type"] == "error" and error["error"]["condition"] == condition, error
            assert _post(sms["webhook"], {"from": "+15551234567", "to": "+19990000000", "text": "x"}) == 404
            assert _post(sms["webhook"], {"from": "+15551234567", "to": SASHA_NUMBER, "text": "x"}, "wrong") == 401
    run(scenario())


def test_gateway_is_discoverable(sms):
    """The server's disco#items lists the gateway with its configured name, and the
    gateway itself answers disco#info with identity gateway/sms (wokkel's DiscoHandler)."""
    async def scenario():
        async with logged_in(sms["server"], "sam@example.test/d", USERS["sam@example.test"]) as sam:
            sam.xmpp.register_plugin("xep_0030")
            items = await sam.xmpp.plugin["xep_0030"].get_items(jid="example.test", timeout=10)
            assert (DOMAIN, None, "SMS") in items["disco_items"]["items"]
            info = await sam.xmpp.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=10)
            assert ("gateway", "sms", None, "SMS gateway") in info["disco_info"]["identities"]
    run(scenario())


async def _in_thread(fn, *args):
    import asyncio
    return await asyncio.to_thread(fn, *args)


async def _poll(fetch, timeout: float = IO_TIMEOUT):
    import asyncio
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = fetch()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)
