"""XEP-0114 components against the real twistd, with slixmpp's ComponentXMPP as the component."""

from __future__ import annotations

import asyncio
import signal
from typing import Iterator

import pytest

from tests.e2e.component_client import ComponentRefused, attached, connect_component, error_condition
from tests.e2e.harness import HarnessError, ServerProcess, free_port, lines_matching, logged_in, run

USERS = {
    "cora@example.test": "cora-secret",
    "cody@example.test": "cody-secret",
    "cleo@example.test": "cleo-secret",
    "cyan@example.test": "cyan-secret",
}
SECRET = "s3cret-for-components"
FILE_SECRET = "from-a-file"


def _component(domain: str, **extra) -> dict:
    return {"domain": domain, "secret": SECRET, **extra}


@pytest.fixture(scope="module")
def gw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a component port and a component domain per test."""
    root = tmp_path_factory.mktemp("components")
    (root / "file.secret").write_text(FILE_SECRET + "\n")
    port = free_port()
    components = [
        _component("echo.example.test", name="Echo service"),
        _component("dup.example.test"),
        _component("swap.example.test", replace=True),
        _component("gone.example.test"),
        _component("forge.example.test"),
        _component("priv.example.test", privileges={"message": "outgoing", "roster": "both"}),
        {"domain": "file.example.test", "secret_file": str(root / "file.secret")},
    ]
    srv = ServerProcess(root / "server", overrides={
        "components": {"listen": [f"tcp:{port}:interface=127.0.0.1"], "component": components}})
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
        raise HarnessError("the component server logged errors:\n" + "\n".join(problems))
    assert SECRET not in srv.log_text() and FILE_SECRET not in srv.log_text(), "a secret reached the log"


def test_handshake_with_the_right_secret(gw_server):
    """A component with the configured secret (inline, or read from secret_file)
    completes the handshake, and the server logs it as connected."""
    async def scenario():
        async with attached(gw_server.component_port, "echo.example.test", SECRET):
            pass
        async with attached(gw_server.component_port, "file.example.test", FILE_SECRET):
            pass
    run(scenario())
    gw_server.wait_log(r"Component file\.example\.test connected")


def test_wrong_secret_is_not_authorized(gw_server):
    """A wrong secret gets the <not-authorized/> stream error and the connection
    closes; the failure is logged with the peer address, never the secret."""
    async def scenario():
        with pytest.raises(ComponentRefused) as info:
            await connect_component(gw_server.component_port, "echo.example.test", "not-the-secret")
        assert info.value.condition == "not-authorized"
    run(scenario())
    line = gw_server.wait_log(r"Component authentication failure for echo\.example\.test")
    assert "127.0.0.1" in line and "not-the-secret" not in gw_server.log_text()


def test_unknown_domain_is_host_unknown(gw_server):
    """A component domain that is not configured gets <host-unknown/>."""
    async def scenario():
        with pytest.raises(ComponentRefused) as info:
            await connect_component(gw_server.component_port, "nobody.example.test", SECRET)
        assert info.value.condition == "host-unknown"
    run(scenario())


def test_messages_and_iqs_both_ways(gw_server):
    """A local user and a component exchange messages both ways (the component sees
    the user's full JID as 'from', the user sees the component's address), and iqs
    both ways: the user pings the component, the component pings the user and the
    server, and each gets its result."""
    async def scenario():
        async with logged_in(gw_server, "cora@example.test/phone", USERS["cora@example.test"]) as cora, \
                attached(gw_server.component_port, "echo.example.test", SECRET) as echo:
            cora.xmpp.send_message(mto="bot@echo.example.test", mbody="hello gateway", mtype="chat")
            msg = await echo.next_message()
            assert (msg["body"], msg["from"].full, msg["to"].full) == (
                "hello gateway", "cora@example.test/phone", "bot@echo.example.test")
            echo.xmpp.send_message(mto="cora@example.test/phone", mfrom="bot@echo.example.test",
                                   mbody="hello user", mtype="chat")
            reply = await cora.next_message()
            assert (reply["body"], reply["from"].full) == ("hello user", "bot@echo.example.test")

            result = await cora.xmpp.plugin["xep_0199"].send_ping("echo.example.test", timeout=10)
            assert result["type"] == "result" and result["from"].full == "echo.example.test"
            result = await echo.xmpp.plugin["xep_0199"].send_ping(
                "cora@example.test/phone", ifrom="echo.example.test", timeout=10)
            assert result["type"] == "result" and result["from"].full == "cora@example.test/phone"
            result = await echo.xmpp.plugin["xep_0199"].send_ping(
                "example.test", ifrom="echo.example.test", timeout=10)
            assert result["type"] == "result"
    run(scenario())


def test_from_outside_its_domain_is_refused(gw_server):
    """A component that puts a local user's address, another component's or a
    subdomain's in 'from' gets a <forbidden/> stanza error back, and nothing
    reaches the addressee."""
    async def scenario():
        async with logged_in(gw_server, "cody@example.test/x", USERS["cody@example.test"]) as cody, \
                attached(gw_server.component_port, "forge.example.test", SECRET) as forge:
            for forged in ("cora@example.test", "echo.example.test", "a.forge.example.test"):
                forge.xmpp.send_message(mto="cody@example.test/x", mfrom=forged, mbody="forged")
                error = await forge.next_error()
                assert error["type"] == "error" and error_condition(error) == "forbidden", error
                assert error["to"].full == forged
            forge.xmpp.send_message(mto="cody@example.test/x", mfrom="ok@forge.example.test", mbody="genuine")
            msg = await cody.next_message()
            assert (msg["body"], msg["from"].full) == ("genuine", "ok@forge.example.test")
            await cody.barrier()
            assert cody.messages.empty()
    run(scenario())


def test_duplicate_connection_is_refused(gw_server):
    """A second connection for a connected component gets <conflict/>, and the first
    keeps working."""
    async def scenario():
        async with logged_in(gw_server, "cleo@example.test/d", USERS["cleo@example.test"]) as cleo, \
                attached(gw_server.component_port, "dup.example.test", SECRET) as first:
            with pytest.raises(ComponentRefused) as info:
                await connect_component(gw_server.component_port, "dup.example.test", SECRET)
            assert info.value.condition == "conflict"
            cleo.xmpp.send_message(mto="dup.example.test", mbody="still there?")
            assert (await first.next_message())["body"] == "still there?"
    run(scenario())


def test_duplicate_connection_replaces_when_configured(gw_server):
    """With replace = true the newcomer wins: the old connection gets <conflict/> and
    stanzas go to the new one."""
    async def scenario():
        async with logged_in(gw_server, "cleo@example.test/r", USERS["cleo@example.test"]) as cleo, \
                attached(gw_server.component_port, "swap.example.test", SECRET) as old:
            async with attached(gw_server.component_port, "swap.example.test", SECRET) as new:
                assert await old.next_stream_error() == "conflict"
                cleo.xmpp.send_message(mto="swap.example.test", mbody="which one?")
                assert (await new.next_message())["body"] == "which one?"
                await asyncio.wait_for(old.disconnected.wait(), 10)
                assert old.messages.empty()
    run(scenario())


def test_disconnected_component_answers_with_service_unavailable(gw_server):
    """A user talking to a component that went away gets <service-unavailable/> for
    messages and iqs (never silence), from the component's address; when it comes
    back, messages reach it again."""
    async def scenario():
        async with logged_in(gw_server, "cyan@example.test/g", USERS["cyan@example.test"]) as cyan:
            async with attached(gw_server.component_port, "gone.example.test", SECRET) as gone:
                cyan.xmpp.send_message(mto="x@gone.example.test", mbody="first")
                assert (await gone.next_message())["body"] == "first"
            await asyncio.to_thread(gw_server.wait_log, r"Component gone\.example\.test disconnected")
            cyan.xmpp.send_message(mto="x@gone.example.test", mbody="anyone?")
            error = await cyan.next_message()
            assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"
            assert error["from"].full == "x@gone.example.test"
            with pytest.raises(Exception) as info:
                await cyan.xmpp.plugin["xep_0199"].send_ping("gone.example.test", timeout=10)
            assert info.value.iq["error"]["condition"] == "service-unavailable"
            async with attached(gw_server.component_port, "gone.example.test", SECRET) as back:
                cyan.xmpp.send_message(mto="x@gone.example.test", mbody="again")
                assert (await back.next_message())["body"] == "again"
    run(scenario())
    gw_server.wait_log(r"Component gone\.example\.test is not connected: message from cyan@example\.test/g")


def test_privileged_message_is_routed_as_the_user(gw_server):
    """XEP-0356: after the handshake the server advertises the configured privileges
    (urn:xmpp:privilege:2, read by slixmpp's plugin); the component then sends a
    message on behalf of cora@example.test, which cody receives from cora's bare JID,
    and which cora's own carbon-enabled client sees as a <sent/> carbon (it travels
    cora's outbound path, as if she had sent it).  A component without the privilege
    gets <forbidden/> and nothing is delivered."""
    async def scenario():
        async with logged_in(gw_server, "cody@example.test/p", USERS["cody@example.test"]) as cody, \
                logged_in(gw_server, "cora@example.test/laptop", USERS["cora@example.test"],
                          plugins={"xep_0280": {}}) as cora, \
                attached(gw_server.component_port, "priv.example.test", SECRET, plugins=("xep_0356",)) as priv:
            sent_carbons: asyncio.Queue = asyncio.Queue()
            cora.xmpp.add_event_handler("carbon_sent", sent_carbons.put_nowait)
            await asyncio.wait_for(cora.xmpp.plugin["xep_0280"].enable(), 10)
            plugin = priv.xmpp.plugin["xep_0356"]
            # One advertisement per hosted domain, each its own message: wait for both.
            await _until(lambda: all(plugin.granted_privileges[d].message == "outgoing"
                                     for d in ("example.test", "other.test")))
            assert plugin.granted_privileges["example.test"].roster == "both"
            assert plugin.granted_privileges["other.test"].message == "outgoing"
            inner = priv.xmpp.make_message(mto="cody@example.test/p", mfrom="cora@example.test",
                                           mbody="sent by the gateway for cora", mtype="chat")
            plugin.send_privileged_message(inner)
            msg = await cody.next_message()
            assert (msg["body"], msg["from"].full) == ("sent by the gateway for cora", "cora@example.test")
            carbon = await asyncio.wait_for(sent_carbons.get(), 10)
            assert carbon["carbon_sent"]["body"] == "sent by the gateway for cora"
            assert carbon["carbon_sent"]["to"].full == "cody@example.test/p"

        async with attached(gw_server.component_port, "echo.example.test", SECRET, plugins=("xep_0356",)) as echo:
            plugin = echo.xmpp.plugin["xep_0356"]
            inner = echo.xmpp.make_message(mto="cody@example.test/p", mfrom="cora@example.test", mbody="nope")
            plugin._make_privileged_message(inner).send()
            error = await echo.next_error()
            assert error["type"] == "error" and error_condition(error) == "forbidden", error
    run(scenario())


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_privileged_roster_get_and_set(gw_server):
    """XEP-0356 roster privilege: the component adds a contact to cleo's roster (several
    items may come in one set; 'subscription' is not the component's to set) and reads
    the roster back; cleo's own client sees the new item with its name and group."""
    async def scenario():
        async with logged_in(gw_server, "cleo@example.test/roster", USERS["cleo@example.test"]) as cleo, \
                attached(gw_server.component_port, "priv.example.test", SECRET, plugins=("xep_0356",)) as priv:
            plugin = priv.xmpp.plugin["xep_0356"]
            await _until(lambda: plugin.granted_privileges["example.test"].roster == "both")
            await plugin.set_roster("cleo@example.test", {
                "+15551234@priv.example.test": {"name": "Mum", "subscription": "both", "groups": ["SMS"]},
                "+15559876@priv.example.test": {"name": "Dad", "subscription": "none", "groups": []},
            }, timeout=10)
            result = await plugin.get_roster("cleo@example.test", timeout=10)
            items = result["roster"]["items"]
            assert items["+15551234@priv.example.test"]["name"] == "Mum"
            assert items["+15551234@priv.example.test"]["groups"] == ["SMS"]
            assert items["+15551234@priv.example.test"]["subscription"] == "none"
            assert "+15559876@priv.example.test" in items
            own = await cleo.xmpp.get_roster(timeout=10)
            assert own["roster"]["items"]["+15551234@priv.example.test"]["name"] == "Mum"
    run(scenario())


def test_shutdown_closes_components_with_system_shutdown(own_server):
    """On SIGTERM a connected component gets <system-shutdown/> and the server exits
    cleanly."""
    port = free_port()
    srv = own_server({"components": {"listen": [f"tcp:{port}:interface=127.0.0.1"],
                                     "component": [_component("bye.example.test")]}})

    async def scenario():
        async with attached(port, "bye.example.test", SECRET) as bye:
            srv.proc.send_signal(signal.SIGTERM)
            assert await bye.next_stream_error() == "system-shutdown"
            await asyncio.wait_for(bye.disconnected.wait(), 10)
    run(scenario())
    assert srv.exited_cleanly(srv.wait_exit())
