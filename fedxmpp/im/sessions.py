"""The table of bound client sessions: who is online, with which resources."""

from __future__ import annotations

import base64
import os
from typing import Iterator, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.router import Settled
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID

log = Logger()


class BoundSession(Protocol):
    """What the session table needs of a client session."""

    bare: JID
    address: JID
    available: bool
    priority: int
    #: The last available presence the resource broadcast (None when unavailable).
    presence: domish.Element | None
    replaced: bool

    def send(self, stanza: domish.Element) -> Settled: ...

    def send_tracked(self, stanza: domish.Element) -> Deferred[bool]:
        """Send *stanza*; True once it was delivered (acknowledged by stream
        management, or passed on by an open connection), False if it was not
        and will not be — the caller still owns it then."""

    def ready(self) -> Deferred[bool]:
        """True once the session can take another tracked stanza without
        buffering past its connection's limits; False when it is no longer a
        destination."""

    def close(self, error: StreamError | None = None) -> None: ...


class SessionManager:
    """Maps bare JIDs to their bound resources.

    A resource that is already bound is taken over by the newest session; the old
    one is closed with a ``<conflict/>`` stream error (RFC 6120 §7.7.2.2).
    """

    def __init__(self) -> None:
        self._by_bare: dict[JID, dict[str, BoundSession]] = {}
        self.count = 0

    def bind(self, session: BoundSession, resource: str | None) -> JID:
        resources = self._by_bare.setdefault(session.bare, {})
        if resource is None:
            resource = _generate_resource()
            while resource in resources:  # pragma: no cover - 96 random bits
                resource = _generate_resource()
        old = resources.get(resource)
        if old is not None:
            log.info("Resource conflict for {jid}: the new session replaces the old", jid=old.address.full())
            old.replaced = True
            self._remove(old)
            old.close(StreamError("conflict", "Replaced by a new connection for the same resource"))
            resources = self._by_bare.setdefault(session.bare, {})
        session.address = session.bare.with_resource(resource)
        resources[resource] = session
        self.count += 1
        return session.address

    def unbind(self, session: BoundSession) -> None:
        if session.replaced:
            return
        self._remove(session)

    def _remove(self, session: BoundSession) -> None:
        resources = self._by_bare.get(session.bare)
        if not resources or session.address.resource is None:
            return
        if resources.get(session.address.resource) is session:
            del resources[session.address.resource]
            self.count -= 1
            if not resources:
                del self._by_bare[session.bare]

    def get(self, full: JID) -> BoundSession | None:
        resources = self._by_bare.get(full.bare)
        if resources is None or full.resource is None:
            return None
        return resources.get(full.resource)

    def resources(self, bare: JID) -> list[BoundSession]:
        return list(self._by_bare.get(bare, {}).values())

    def all(self) -> Iterator[BoundSession]:
        for resources in list(self._by_bare.values()):
            yield from list(resources.values())


def _generate_resource() -> str:
    return "fedxmpp-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
