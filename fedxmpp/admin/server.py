"""The server's side of the admin socket."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from fedxmpp.admin import reload, status
from fedxmpp.admin.commands import (
    BadRequest, Connected, Kick, Reload, ReloadFailed, RemoveAccount, Status, UnknownAccount,
)
from fedxmpp.im.accounts import remove_account
from fedxmpp.storage import NoSuchAccount
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from pathlib import Path

    from fedxmpp.app import FedXmpp

log = Logger()

# Bytes of JSON per Connected page: an AMP value holds at most 65535.
PAGE_BYTES = 60000


class AdminSocketInUse(Exception):
    """Another process holds the admin socket (the message is for the operator)."""


class AdminProtocol(amp.AMP):
    """One connection of the fedxmpp command."""

    def __init__(self, app: FedXmpp) -> None:
        super().__init__()
        self.app = app
        self.ctx = app.features

    @RemoveAccount.responder
    def remove_account(self, jid: str) -> Deferred[dict[str, Any]]:
        return Deferred.fromCoroutine(self._remove_account(jid))

    async def _remove_account(self, jid: str) -> dict[str, Any]:
        user = self._account(jid)
        sessions = len(self.ctx.sessions.resources(user))
        try:
            await remove_account(self.ctx, user, reason="fedxmpp deluser")
        except NoSuchAccount:
            raise UnknownAccount(f"no account {user.full()}") from None
        return {"sessions": sessions}

    @Status.responder
    def status(self) -> dict[str, Any]:
        return asdict(status.summary(self.app))

    @Connected.responder
    def connected_sessions(self, start: int) -> dict[str, Any]:  # not 'connected': BaseProtocol's flag
        sessions = status.connected(self.app)[max(start, 0):]
        page: list[dict[str, Any]] = []
        size = 2
        for session in sessions:
            entry = asdict(session)
            size += len(json.dumps(entry).encode()) + 2
            if page and size > PAGE_BYTES:
                break
            page.append(entry)
        following = max(start, 0) + len(page)
        return {"sessions": json.dumps(page), "next": following if len(page) < len(sessions) else -1}

    @Kick.responder
    def kick(self, jid: str, reason: str | None = None) -> dict[str, Any]:
        user = self._jid(jid)
        ended = status.kick(self.app, user, reason or "")
        log.info("Admin kicked {jid}: {n} session(s) ended", jid=user.full(), n=ended)
        return {"sessions": ended}

    @Reload.responder
    def reload(self) -> dict[str, Any]:
        log.info("Admin asked to reload")
        try:
            result = reload.reload(self.app)
        except reload.ReloadFailed as e:
            log.error("Reload failed, nothing changed: {problem}", problem=str(e))
            raise ReloadFailed(str(e)) from None
        return {"applied": ", ".join(result.applied), "refused": ", ".join(result.refused)}

    def _jid(self, jid: str) -> JID:
        try:
            user = JID.parse(jid)
        except InvalidJID as e:
            raise BadRequest(f"{jid!r} is not a valid address ({e})") from None
        if user.user is None:
            raise BadRequest(f"{jid!r} is not a user's address (user@domain or user@domain/resource)")
        if user.host not in self.ctx.router.hosted:
            raise BadRequest(f"{user.host} is not a domain of this server")
        return user

    def _account(self, jid: str) -> JID:
        try:
            user = JID.parse(jid)
        except InvalidJID as e:
            raise BadRequest(f"{jid!r} is not a valid address ({e})") from None
        if user.user is None or user.resource is not None:
            raise BadRequest(f"{jid!r} is not an account's address (user@domain)")
        if user.host not in self.ctx.router.hosted:
            raise BadRequest(f"{user.host} is not a domain of this server")
        return user


def listen(reactor: Any, path: Path, app: FedXmpp) -> Any:
    """Listen on *path* (mode 0600).  A socket left behind by a server that died is
    replaced; one that a running process holds raises :class:`AdminSocketInUse`."""
    factory = Factory.forProtocol(lambda: AdminProtocol(app))
    try:
        return reactor.listenUNIX(str(path), factory, mode=0o600, wantPID=True)
    except CannotListenError as e:
        if "lock" in str(e.socketError):
            raise AdminSocketInUse(f"{str(path)!r} belongs to another running server") from None
        raise AdminSocketInUse(f"cannot listen on {str(path)!r}: {e.socketError}") from None
