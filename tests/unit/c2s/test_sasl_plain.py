"""SASL PLAIN, server side (RFC 4616)."""

from __future__ import annotations

import pytest
import pytest_twisted

from fedxmpp.c2s.mechanism import MAX_MESSAGE, Challenge, Failure, Success
from fedxmpp.c2s.plain import PlainMechanism
from fedxmpp.storage import StorageError
from fedxmpp.storage.credentials import derive_all

from tests.unit.storage.fakes import MemoryAccountStore

DOMAIN = "example.test"


@pytest.fixture
def accounts() -> MemoryAccountStore:
    store = MemoryAccountStore()
    store.put("alice", DOMAIN, derive_all("s3cret pass", 4096))
    return store


def plain(accounts: MemoryAccountStore) -> PlainMechanism:
    return PlainMechanism(domain=DOMAIN, accounts=accounts)


@pytest.mark.parametrize("message", [
    b"\0alice\0s3cret pass",
    b"\0Alice\0s3cret pass",                      # the username is prepared
    b"alice@example.test\0alice\0s3cret pass",    # authzid = own bare JID
])
@pytest_twisted.ensureDeferred
async def test_success(accounts, message):
    """The right password authenticates as the prepared localpart, with no
    additional data."""
    assert await plain(accounts).step(message) == Success("alice", None)


@pytest.mark.parametrize("message", [
    b"\0alice\0wrong",
    b"\0nobody\0s3cret pass",
    b"\0bad@user\0s3cret pass",
])
@pytest_twisted.ensureDeferred
async def test_refused_credentials(accounts, message):
    """Wrong password, unknown user and impossible username all give the same
    bare not-authorized."""
    assert await plain(accounts).step(message) == Failure("not-authorized")


@pytest.mark.parametrize("authzid", [b"bob@example.test", b"alice@example.test/res", b"alice@other.test"])
@pytest_twisted.ensureDeferred
async def test_other_authzid(accounts, authzid):
    """An authzid other than the account's own bare JID is invalid-authzid."""
    assert await plain(accounts).step(authzid + b"\0alice\0s3cret pass") == Failure("invalid-authzid")


@pytest.mark.parametrize("message", [
    b"",                               # empty initial response
    b"alice\0s3cret pass",             # one NUL
    b"\0alice\0s3cret\0pass",          # three NULs
    b"\0alice\0",                      # empty password
    b"\0\0s3cret pass",                # empty username
    b"\0al\xffice\0s3cret pass",       # not UTF-8
    b"\0alice\0" + b"p" * MAX_MESSAGE,  # too long
])
@pytest_twisted.ensureDeferred
async def test_malformed(accounts, message):
    """Messages that break RFC 4616's syntax fail with malformed-request."""
    result = await plain(accounts).step(message)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_no_initial_response(accounts):
    """Without an initial response the server sends an empty challenge and takes
    the credentials in the response; a second empty turn is malformed."""
    mech = plain(accounts)
    assert await mech.step(None) == Challenge(b"")
    assert await mech.step(b"\0alice\0s3cret pass") == Success("alice", None)

    other = plain(accounts)
    assert await other.step(None) == Challenge(b"")
    result = await other.step(None)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_one_attempt_per_exchange(accounts):
    """After a failure the same exchange cannot be used to guess again."""
    mech = plain(accounts)
    assert await mech.step(b"\0alice\0wrong") == Failure("not-authorized")
    result = await mech.step(b"\0alice\0s3cret pass")
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_storage_error(accounts):
    """A failing password check becomes temporary-auth-failure."""
    accounts.broken = StorageError("disk I/O error")
    assert await plain(accounts).step(b"\0alice\0s3cret pass") == Failure("temporary-auth-failure")
