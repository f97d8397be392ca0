"""SASL PLAIN, server side (RFC 4616).  Only ever offered on TLS."""

from __future__ import annotations

from typing import Final

from twisted.logger import Logger

from fedxmpp.c2s.mechanism import MAX_MESSAGE, Challenge, Failure, Success, authzid_acceptable
from fedxmpp.storage import AccountStore
from fedxmpp.xml.jid import InvalidJID, prep_local

log = Logger()

NAME: Final = "PLAIN"


class PlainMechanism:
    """``[authzid] NUL authcid NUL passwd`` in UTF-8, checked with the account store."""

    name = NAME

    def __init__(self, *, domain: str, accounts: AccountStore) -> None:
        self._domain = domain
        self._accounts = accounts
        self._asked = False
        self._done = False

    async def step(self, response: bytes | None) -> Challenge | Success | Failure:
        if self._done:
            return Failure("malformed-request", "the exchange is over")
        if response is None and not self._asked:
            self._asked = True
            return Challenge(b"")
        self._done = True
        if response is None:
            return Failure("malformed-request", "no credentials")
        return await self._authenticate(response)

    async def _authenticate(self, message: bytes) -> Success | Failure:
        if len(message) > MAX_MESSAGE:
            return Failure("malformed-request", "message too long")
        parts = message.split(b"\0")
        if len(parts) != 3:
            return Failure("malformed-request", "expected authzid NUL authcid NUL password")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return Failure("malformed-request", "not UTF-8")
        if not authcid or not password:
            return Failure("malformed-request", "empty username or password")
        try:
            user = prep_local(authcid)
        except InvalidJID:
            return Failure("not-authorized")
        if not authzid_acceptable(authzid, user, self._domain):
            return Failure("invalid-authzid")
        try:
            ok = await self._accounts.check_password(user, self._domain, password)
        except Exception:
            log.failure("PLAIN: password check for {user}@{domain} failed",
                        user=user, domain=self._domain)
            return Failure("temporary-auth-failure")
        if not ok:
            return Failure("not-authorized", user=user)
        return Success(user, None)
