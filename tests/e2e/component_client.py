"""slixmpp's ComponentXMPP, driven for the component tests (every wait bounded)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.harness import IO_TIMEOUT, close_slixmpp


STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def error_condition(stanza: Any) -> str | None:
    """The stanza error condition of what a component received.

    Read from the XML: slixmpp's Error plugin only knows ``{jabber:client}error``
    (unless ``fix_error_ns``, which is process-wide and would break the clients of
    the same test), while a component stream carries ``jabber:component:accept``.
    """
    for error in stanza.xml:
        if error.tag.endswith("}error"):
            for child in error:
                if child.tag.startswith(f"{{{STANZA_ERRORS}}}") and not child.tag.endswith("}text"):
                    return child.tag.split("}", 1)[1]
    return None


class ComponentRefused(Exception):
    def __init__(self, reason: str, condition: str | None) -> None:
        super().__init__(reason)
        self.condition = condition


@dataclass
class Component:
    """A connected slixmpp component with queues of what it received."""

    xmpp: Any
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    errors: asyncio.Queue = field(default_factory=asyncio.Queue)
    stream_errors: asyncio.Queue = field(default_factory=asyncio.Queue)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_message(self, timeout: float = IO_TIMEOUT) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_error(self, timeout: float = IO_TIMEOUT) -> Any:
        """The next message of type 'error' (whether or not it carries a body)."""
        return await asyncio.wait_for(self.errors.get(), timeout)

    async def next_stream_error(self, timeout: float = IO_TIMEOUT) -> str:
        error = await asyncio.wait_for(self.stream_errors.get(), timeout)
        return error["condition"]

    async def close(self, timeout: float = 5.0) -> None:
        await close_slixmpp(self.xmpp, timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.disconnected.wait(), timeout)


async def connect_component(port: int, domain: str, secret: str, *, plugins: tuple[str, ...] = ("xep_0199",),
                            timeout: float = IO_TIMEOUT) -> Component:
    """Connect slixmpp's ComponentXMPP and wait for the handshake to succeed (bounded).

    Raises :class:`ComponentRefused` with the stream error condition when it does not.
    """
    import slixmpp

    xmpp = slixmpp.ComponentXMPP(domain, secret, "127.0.0.1", port)
    xmpp.use_aiodns = False
    xmpp.whitespace_keepalive = False
    for plugin in plugins:
        xmpp.register_plugin(plugin, {"keepalive": False} if plugin == "xep_0199" else None)
    component = Component(xmpp)
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()
    conditions: list[str] = []

    def settle(value: Any) -> None:
        if not outcome.done():
            outcome.set_result(value)

    def on_stream_error(error: Any) -> None:
        conditions.append(error["condition"])
        component.stream_errors.put_nowait(error)
        settle(f"stream error {error['condition']}")

    def on_disconnected(_e: Any) -> None:
        component.disconnected.set()
        settle("disconnected before the handshake completed")

    xmpp.add_event_handler("session_start", lambda _e: settle(None))
    xmpp.add_event_handler("stream_error", on_stream_error)
    xmpp.add_event_handler("connection_failed", lambda e: settle(f"connection failed: {e}"))
    xmpp.add_event_handler("disconnected", on_disconnected)
    xmpp.add_event_handler("message", lambda m: m["type"] == "error" or component.messages.put_nowait(m))
    xmpp.add_event_handler("message_error", component.errors.put_nowait)
    xmpp.connect()
    try:
        reason = await asyncio.wait_for(outcome, timeout)
    except asyncio.TimeoutError:
        reason = f"no handshake after {timeout}s"
    if reason is not None:
        await component.close()
        raise ComponentRefused(f"{domain}: {reason}", conditions[0] if conditions else None)
    return component


@contextlib.asynccontextmanager
async def attached(port: int, domain: str, secret: str, **kw: Any) -> Any:
    component = await connect_component(port, domain, secret, **kw)
    try:
        yield component
    finally:
        await component.close()
