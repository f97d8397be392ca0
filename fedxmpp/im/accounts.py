"""Ending an account while the server runs: one path for in-band removal (XEP-0077)
and for the operator (``fedxmpp deluser`` through the admin socket).

In order, in the user's queue of roster work: the roster is read, the account is
deleted with everything stored for it (credentials, roster, offline messages,
archive, PEP and private data go with the account row), each contact is told as
if its item had been removed (RFC 6121 §2.5.2: ``unsubscribe``/``unsubscribed``
and ``unavailable``).  Then features forget what they keep in memory (the
``account/removed`` hook, with the bare JID), and every session of the account,
a hibernating one included, is closed with a ``<not-authorized/>`` stream error.
The deletion comes first, so no new login can slip in between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext

log = Logger()


async def remove_account(ctx: ServerContext, user: JID, *, reason: str,
                         before_close: Callable[[], None] | None = None) -> None:
    """Delete *user*'s account and end its sessions; raises
    :class:`~fedxmpp.storage.NoSuchAccount` when there is no such account.
    *before_close* runs once the account is gone, while its sessions are still
    open (to answer the request that removed it)."""
    bare = user.bare

    async def delete() -> None:
        await ctx.storage.accounts.delete(bare.user, bare.host)

    await ctx.roster.remove_account(bare, delete)
    log.info("Account {user} removed ({reason})", user=bare.full(), reason=reason)
    ctx.hooks.fire("account/removed", bare)
    if before_close is not None:
        before_close()
    for session in ctx.sessions.resources(bare):
        session.close(StreamError("not-authorized", "This account has been removed"))
