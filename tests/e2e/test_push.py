"""XEP-0357 push notifications against the real twistd: slixmpp clients enable push
and go away (offline, or hibernating under XEP-0198), and a slixmpp XEP-0114
component stands in for the app server, answering notifications with results or
errors.  The server is restarted in between: registrations survive it."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from tests.e2e.component_client import Component, connect_component
from tests.e2e.harness import IO_TIMEOUT, HarnessError, ServerProcess, free_port, kill, lines_matching, login, run
from tests.e2e.test_muc import configure
from tests.e2e.test_sm_csi import reconnect_and_resume, sm_login

USERS = {
    "pia@example.test": "pia-secret",
    "pete@example.test": "pete-secret",
    "hana@example.test": "hana-secret",
    "erin@example.test": "erin-secret",
    "sam@example.test": "sam-secret",
    "tara@example.test": "tara-secret",
    "nico@example.test": "nico-secret",
}
APP = "push.example.test"
ROOMS = "conference.example.test"
SECRET = "component-secret"
PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
COMPONENT = "jabber:component:accept"
SM_RESUME_TIMEOUT = 2


@pytest.fixture(scope="module")
def push_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the app server's component domain, short push intervals, and
    a short [c2s] sm_resume_timeout that [push] hibernation_timeout outlasts."""
    root = tmp_path_factory.mktemp("push")
    port = free_port()
    srv = ServerProcess(root / "server", overrides={
        "components": {"listen": [f"tcp:{port}:interface=127.0.0.1"],
                       "component": [{"domain": APP, "secret": SECRET}]},
        "c2s": {"sm_resume_timeout": SM_RESUME_TIMEOUT},
        "muc": {"domain": ROOMS},
        "push": {"min_interval": 1, "retry_delay": 1, "max_attempts": 3, "reply_timeout": 20,
                 "hibernation_timeout": 120},
    })
    srv.component_port = port
    srv.import_users(USERS)
    srv.start()
    try:
        yield srv
    finally:
        if srv.running:
            srv.stop()
    problems = lines_matching(srv.log_text(), r"Traceback|Unhandled (error|Error)")
    if problems:
        raise HarnessError("the push server logged errors:\n" + "\n".join(problems))


# -- the app server stand-in -------------------------------------------------------------------------


@dataclass
class Notification:
    iq_id: str
    sender: str
    node: str | None
    summary: dict[str, str]
    options: dict[str, str]


@dataclass
class AppServer:
    """The component with a queue of the notifications it received, answered by the test."""

    component: Component
    domain: str
    received: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def next(self, timeout: float = IO_TIMEOUT) -> Notification:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def none_within(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            got = await asyncio.wait_for(self.received.get(), seconds)
            raise AssertionError(f"unexpected notification {got}")

    def answer(self, n: Notification, error: tuple[str, str] | None = None) -> None:
        if error is None:
            payload, kind = "", "result"
        else:
            payload = (f"<error type='{error[0]}'><{error[1]} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                       "</error>")
            kind = "error"
        self.component.xmpp.send_raw(f"<iq type='{kind}' id='{n.iq_id}' from='{self.domain}' to='{n.sender}'>"
                                     f"{payload}</iq>")


def _fields(form: ET.Element | None) -> dict[str, str]:
    if form is None:
        return {}
    return {f.get("var"): f.findtext(f"{{{DATA}}}value") or "" for f in form.findall(f"{{{DATA}}}field")}


@contextlib.asynccontextmanager
async def app_server(port: int, domain: str = APP, secret: str = SECRET) -> Any:
    """A slixmpp component on *domain* standing in for an app server (XEP-0357)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    component = await connect_component(port, domain, secret)
    app = AppServer(component, domain)

    def on_publish(iq: Any) -> None:
        xml = iq.xml
        publish = xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        form = xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{DATA}}}x")
        options = xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{DATA}}}x")
        app.received.put_nowait(Notification(xml.get("id"), xml.get("from"),
                                             None if publish is None else publish.get("node"),
                                             _fields(form), _fields(options)))

    component.xmpp.register_handler(Callback("push publish", MatchXPath(
        f"{{{COMPONENT}}}iq/{{{PUBSUB}}}pubsub"), on_publish))
    try:
        yield app
    finally:
        await component.close()


# -- the client side ---------------------------------------------------------------------------------


SECRET_FORM = (f"<x xmlns='{DATA}' type='submit'>"
               "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
               "<field var='secret'><value>app-secret-1</value></field></x>")


async def enable_push(client: Any, node: str, form: str = SECRET_FORM, app: str = APP) -> None:
    iq = client.xmpp.make_iq_set()
    iq.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='{app}' node='{node}'>{form}</enable>"))
    result = await iq.send(timeout=IO_TIMEOUT)
    assert result["type"] == "result"


async def disco_features(client: Any) -> set[str]:
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=client.jid.bare, timeout=IO_TIMEOUT)
    return set(info["disco_info"]["features"])


def send_chats(sender: Any, to: str, bodies: list[str]) -> None:
    for body in bodies:
        sender.xmpp.send_message(mto=to, mbody=body, mtype="chat")


async def received_bodies(client: Any, n: int) -> list[str]:
    return [(await client.next_message())["body"] for _ in range(n)]


# -- tests ----------------------------------------------------------------------------------------


def test_offline_account_is_woken_after_a_restart_and_gets_every_message(push_server):
    """pia enables push (with a secret) and leaves; the server restarts; pete
    sends her 5 messages.  The app server gets notifications from pia's bare JID
    on her node, with the secret, pete as sender, no body, counts growing to 5,
    coalesced (never more notifications than messages, one in flight at a time);
    then pia logs in and gets all 5 messages, in order."""
    pia, pete = "pia@example.test", "pete@example.test"
    bodies = [f"wake {n}" for n in range(1, 6)]

    async def before_restart():
        client = await login(push_server, f"{pia}/phone", USERS[pia])
        try:
            assert PUSH in await disco_features(client)
            await enable_push(client, "pia-node")
        finally:
            await client.close()

    async def after_restart():
        async with app_server(push_server.component_port) as app:
            sender = await login(push_server, f"{pete}/desk", USERS[pete])
            try:
                send_chats(sender, pia, bodies)
                counts = []
                while not counts or counts[-1] < len(bodies):
                    n = await app.next()
                    assert (n.sender, n.node) == (pia, "pia-node")
                    assert n.options == {"FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options",
                                         "secret": "app-secret-1"}
                    assert n.summary["FORM_TYPE"] == "urn:xmpp:push:summary"
                    assert n.summary["last-message-sender"] == f"{pete}/desk"
                    assert "last-message-body" not in n.summary
                    counts.append(int(n.summary["message-count"]))
                    app.answer(n)
                assert counts == sorted(counts) and len(counts) <= len(bodies)
                await app.none_within(2.5)
            finally:
                await sender.close()
        phone = await login(push_server, f"{pia}/phone", USERS[pia])
        try:
            phone.xmpp.send_presence()
            assert await received_bodies(phone, len(bodies)) == bodies
        finally:
            await phone.close()

    run(before_restart())
    push_server.stop()
    push_server.start()
    run(after_restart(), timeout=90)


def test_hibernating_session_outlives_the_resume_timeout_and_is_woken(push_server):
    """hana's phone (stream management, push enabled) loses its connection; after
    longer than [c2s] sm_resume_timeout it is still hibernating; sam's message to
    it wakes it through the app server; the phone resumes and gets the message."""
    hana, sam = "hana@example.test", "sam@example.test"

    async def scenario():
        async with app_server(push_server.component_port) as app:
            phone = await sm_login(push_server, f"{hana}/phone", USERS[hana])
            try:
                phone.xmpp.send_presence()
                await phone.barrier()
                await enable_push(phone, "hana-node", form="")
                kill(phone)
                await asyncio.sleep(SM_RESUME_TIMEOUT + 2)
                sender = await login(push_server, f"{sam}/desk", USERS[sam])
                try:
                    send_chats(sender, f"{hana}/phone", ["ring ring"])
                    await sender.barrier()
                    n = await app.next()
                    assert (n.sender, n.node, n.summary["message-count"]) == (hana, "hana-node", "1")
                    assert n.options == {}
                    app.answer(n)
                    assert sender.messages.empty(), "the sender got an error back"
                finally:
                    await sender.close()
                await reconnect_and_resume(push_server, phone)
                assert await received_bodies(phone, 1) == ["ring ring"]
            finally:
                await phone.close()

    run(scenario(), timeout=90)
    push_server.wait_log(r"Hibernating hana@example.test/phone: resumable for 120 s")


def test_errors_back_off_then_disable(push_server):
    """A notification answered with an error of type 'wait' is sent again (after
    [push] retry_delay); one answered with <item-not-found/> disables the
    registration: the next message wakes nothing, and is still delivered at login."""
    erin, sam = "erin@example.test", "sam@example.test"

    async def scenario():
        client = await login(push_server, f"{erin}/phone", USERS[erin])
        try:
            await enable_push(client, "erin-node")
        finally:
            await client.close()
        async with app_server(push_server.component_port) as app:
            sender = await login(push_server, f"{sam}/desk", USERS[sam])
            try:
                send_chats(sender, erin, ["first"])
                n = await app.next()
                app.answer(n, ("wait", "resource-constraint"))
                again = await app.next()
                assert again.iq_id != n.iq_id and again.summary["message-count"] == "1"
                app.answer(again, ("cancel", "item-not-found"))
                await sender.barrier()
                push_server.wait_log(r"Push for erin@example.test to push.example.test refused \(item-not-found\)")
                send_chats(sender, erin, ["second"])
                await sender.barrier()
                await app.none_within(3)
            finally:
                await sender.close()
        phone = await login(push_server, f"{erin}/phone", USERS[erin])
        try:
            phone.xmpp.send_presence()
            assert await received_bodies(phone, 2) == ["first", "second"]
        finally:
            await phone.close()

    run(scenario(), timeout=90)


def test_group_chat_wakes_a_hibernating_phone_only_when_it_is_mentioned(push_server):
    """tara joins a room of the server's MUC service as "Tara" from a phone with
    stream management and push, and loses her connection; nico's messages to the
    room that do not mention her wake nothing; the one that says "tara" wakes her
    phone once, from the room as sender; on resuming she gets all three."""
    tara, nico = "tara@example.test", "nico@example.test"
    room = f"talk@{ROOMS}"
    plugins = {"xep_0198": {}, "xep_0045": {}}

    async def scenario():
        async with app_server(push_server.component_port) as app:
            phone = await login(push_server, f"{tara}/phone", USERS[tara], plugins=plugins)
            sm = phone.xmpp.plugin["xep_0198"]
            if not sm.enabled_in:
                enabled = asyncio.Event()
                phone.xmpp.add_event_handler("sm_enabled", lambda _e: enabled.set())
                await asyncio.wait_for(enabled.wait(), IO_TIMEOUT)
            try:
                await phone.xmpp.plugin["xep_0045"].join_muc_wait(room, "Tara", timeout=IO_TIMEOUT)
                await configure(phone, room)  # accepts the defaults: the room opens
                await enable_push(phone, "tara-node", form="")
                kill(phone)
                sender = await login(push_server, f"{nico}/desk", USERS[nico], plugins={"xep_0045": {}})
                try:
                    await sender.xmpp.plugin["xep_0045"].join_muc_wait(room, "Nico", timeout=IO_TIMEOUT)
                    for body in ("hello all", "Taranis is a god, not a mention"):
                        sender.xmpp.send_message(mto=room, mbody=body, mtype="groupchat")
                    await sender.barrier()
                    await app.none_within(2)
                    sender.xmpp.send_message(mto=room, mbody="tara, are you there?", mtype="groupchat")
                    n = await app.next()
                    assert (n.sender, n.node) == (tara, "tara-node")
                    assert n.summary["message-count"] == "1"
                    assert n.summary["last-message-sender"] == f"{room}/Nico"
                    app.answer(n)
                    await app.none_within(2)
                finally:
                    await sender.close()
                await reconnect_and_resume(push_server, phone)
                got = []
                while len(got) < 3:
                    message = await phone.next_message()
                    if message["type"] == "groupchat" and message["body"]:
                        got.append(message["body"])
                assert got == ["hello all", "Taranis is a god, not a mention", "tara, are you there?"]
            finally:
                await phone.close()

    run(scenario(), timeout=90)
