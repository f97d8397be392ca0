"""The admin socket's commands, shared by the server and the ``fedxmpp`` command."""

from __future__ import annotations

from typing import ClassVar

from twisted.protocols import amp


class UnknownAccount(Exception):
    """There is no such account (the description names it)."""


class BadRequest(Exception):
    """The request cannot be carried out as asked (the description says why)."""


class RemoveAccount(amp.Command):
    """Delete an account, tell its contacts and end its sessions; answers how many
    sessions were ended."""

    arguments = [(b"jid", amp.Unicode())]
    response = [(b"sessions", amp.Integer())]
    errors = {UnknownAccount: b"UNKNOWN_ACCOUNT", BadRequest: b"BAD_REQUEST"}


class Status(amp.Command):
    """The server's version, uptime in seconds, and its sessions by kind."""

    arguments: ClassVar[list[tuple[bytes, amp.Argument]]] = []
    response = [(b"version", amp.Unicode()), (b"uptime", amp.Float()), (b"c2s", amp.Integer()),
                (b"hibernating", amp.Integer()), (b"s2s_in", amp.Integer()), (b"s2s_out", amp.Integer()),
                (b"components", amp.Integer())]


class Connected(amp.Command):
    """The bound client sessions from index *start* on, as many as fit in one AMP
    value (64 KiB): *sessions* is a JSON list of objects (jid, address, since,
    tls, sm); *next* is where the following page starts, or -1 after the last."""

    arguments = [(b"start", amp.Integer())]
    response = [(b"sessions", amp.Unicode()), (b"next", amp.Integer())]


class Kick(amp.Command):
    """End the sessions of a bare JID (all its resources) or a full JID (that one)
    with a stream error carrying *reason*; answers how many were ended."""

    arguments = [(b"jid", amp.Unicode()), (b"reason", amp.Unicode(optional=True))]
    response = [(b"sessions", amp.Integer())]
    errors = {BadRequest: b"BAD_REQUEST"}


class ReloadFailed(Exception):
    """The reload changed nothing (the description says why)."""


class Reload(amp.Command):
    """Read the configuration and certificates again and apply what can change
    while running.  *applied* and *refused* are the changed keys, comma-separated:
    taken, and needing a restart (kept at their running values)."""

    arguments: ClassVar[list[tuple[bytes, amp.Argument]]] = []
    response = [(b"applied", amp.Unicode()), (b"refused", amp.Unicode())]
    errors = {ReloadFailed: b"RELOAD_FAILED"}
