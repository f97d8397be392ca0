"""The admin socket's commands, shared by the server and the ``fedxmpp`` command."""

from __future__ import annotations

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
