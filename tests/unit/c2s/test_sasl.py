"""Choosing and building SASL mechanisms, and exchanges against other implementations."""

from __future__ import annotations

import pytest
import pytest_twisted
from slixmpp.util.sasl.mechanisms import SCRAM
from twisted.internet import reactor

from fedxmpp.c2s import sasl
from fedxmpp.c2s.plain import PlainMechanism
from fedxmpp.c2s.scram import ScramMechanism
from fedxmpp.storage import open_storage
from fedxmpp.storage.credentials import derive_all

from tests.unit.c2s.scram_client import ScramClient
from tests.unit.storage.fakes import MemoryAccountStore

DOMAIN = "example.test"
BINDINGS = {"tls-exporter": b"\x01" * 32}
ALL = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


@pytest.fixture
def accounts() -> MemoryAccountStore:
    store = MemoryAccountStore()
    store.put("alice", DOMAIN, derive_all("secret", 4096))
    return store


@pytest.mark.parametrize("tls,bindings,allow_plain,expected", [
    (True, BINDINGS, True, ALL),
    (True, BINDINGS, False, ALL[:4]),
    (True, {}, True, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
    (False, {}, True, ["SCRAM-SHA-256", "SCRAM-SHA-1"]),
])
def test_offered_mechanisms(tls, bindings, allow_plain, expected):
    """Offers go strongest first; -PLUS only with binding data; PLAIN only on TLS when allowed."""
    assert sasl.offered_mechanisms(tls=tls, channel_bindings=bindings, allow_plain=allow_plain) == expected


@pytest.mark.parametrize("name,kind", [
    ("SCRAM-SHA-256-PLUS", ScramMechanism), ("SCRAM-SHA-1-PLUS", ScramMechanism),
    ("SCRAM-SHA-256", ScramMechanism), ("SCRAM-SHA-1", ScramMechanism), ("PLAIN", PlainMechanism),
])
def test_create_each_offered_mechanism(accounts, name, kind):
    """Every offered name builds its mechanism, named as asked."""
    mech = sasl.create_mechanism(name, domain=DOMAIN, accounts=accounts,
                                 channel_bindings=BINDINGS, offered=ALL)
    assert isinstance(mech, kind) and mech.name == name


@pytest.mark.parametrize("name,offered,bindings", [
    ("DIGEST-MD5", ALL + ["DIGEST-MD5"], BINDINGS),        # unknown to us
    ("PLAIN", ALL[:4], BINDINGS),                          # not offered
    ("SCRAM-SHA-256-PLUS", ["SCRAM-SHA-256-PLUS"], {}),    # nothing to bind to
    ("scram-sha-256", ALL, BINDINGS),                      # names are case-sensitive
])
def test_create_refuses_unknown_or_unoffered(accounts, name, offered, bindings):
    """A mechanism that is unknown, not offered or impossible raises KeyError."""
    with pytest.raises(KeyError):
        sasl.create_mechanism(name, domain=DOMAIN, accounts=accounts,
                              channel_bindings=bindings, offered=offered)


@pytest_twisted.ensureDeferred
async def test_y_downgrade_through_create_mechanism(accounts):
    """create_mechanism tells SCRAM that -PLUS was offered, so 'y' is refused."""
    mech = sasl.create_mechanism("SCRAM-SHA-256", domain=DOMAIN, accounts=accounts,
                                 channel_bindings=BINDINGS, offered=ALL)
    result = await mech.step(ScramClient("SCRAM-SHA-256", "alice", "secret", cbflag="y").first())
    assert isinstance(result, sasl.Failure) and result.condition == "not-authorized"


@pytest_twisted.ensureDeferred
async def test_scram_looks_up_its_own_hash_and_domain(accounts):
    """SCRAM-SHA-1 reads the sha-1 credentials of the stream's domain."""
    mech = sasl.create_mechanism("SCRAM-SHA-1", domain=DOMAIN, accounts=accounts,
                                 channel_bindings={}, offered=ALL)
    await mech.step(ScramClient("SCRAM-SHA-1", "alice", "secret").first())
    assert accounts.lookups == [("alice", DOMAIN, "sha-1")]


# --- against slixmpp's client SCRAM ------------------------------------------------------

def _slixmpp_client(name: str, password: str, *, binding: bytes = b"", proposed: bool = True) -> SCRAM:
    creds = {"username": b"alice", "password": password.encode(), "authzid": b"",
             "channel_binding": binding}
    security = {"encrypted": True, "unencrypted_scram": True, "tls_version": "TLSv1.3",
                "binding_proposed": proposed}
    return SCRAM(name, creds, security)


async def _drive(mech: sasl.Mechanism, client: SCRAM) -> sasl.Challenge | sasl.Success | sasl.Failure:
    first = await mech.step(client.process())
    assert isinstance(first, sasl.Challenge)
    result = await mech.step(client.process(first.data))
    if isinstance(result, sasl.Success):
        client.process(result.data)  # slixmpp verifies the server signature; raises if wrong
    return result


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_slixmpp_client(accounts, name):
    """slixmpp's SCRAM client authenticates and accepts the server's signature."""
    mech = sasl.create_mechanism(name, domain=DOMAIN, accounts=accounts,
                                 channel_bindings={}, offered=ALL[2:])
    client = _slixmpp_client(name, "secret", proposed=False)
    result = await _drive(mech, client)
    assert isinstance(result, sasl.Success) and result.user == "alice"


@pytest_twisted.ensureDeferred
async def test_slixmpp_client_plus_tls_exporter(accounts):
    """slixmpp's SCRAM-SHA-256-PLUS with tls-exporter (TLS 1.3) binds and succeeds."""
    mech = sasl.create_mechanism("SCRAM-SHA-256-PLUS", domain=DOMAIN, accounts=accounts,
                                 channel_bindings=BINDINGS, offered=ALL)
    client = _slixmpp_client("SCRAM-SHA-256-PLUS", "secret", binding=BINDINGS["tls-exporter"])
    assert isinstance(await _drive(mech, client), sasl.Success)


@pytest_twisted.ensureDeferred
async def test_slixmpp_client_wrong_password(accounts):
    """slixmpp with a wrong password is refused with not-authorized."""
    mech = sasl.create_mechanism("SCRAM-SHA-256", domain=DOMAIN, accounts=accounts,
                                 channel_bindings={}, offered=ALL[2:])
    result = await _drive(mech, _slixmpp_client("SCRAM-SHA-256", "wrong", proposed=False))
    assert result == sasl.Failure("not-authorized")


# --- against the real store ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_scram_and_plain_against_sqlite_store(storage_cfg):
    """An account created in the SQLite store authenticates with SCRAM-SHA-1,
    SCRAM-SHA-256 and PLAIN through create_mechanism."""
    storage = await open_storage(storage_cfg, reactor)
    try:
        await storage.accounts.create("alice", DOMAIN, "secret")
        for name in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            mech = sasl.create_mechanism(name, domain=DOMAIN, accounts=storage.accounts,
                                         channel_bindings={}, offered=ALL[2:])
            client = ScramClient(name, "alice", "secret")
            first = await mech.step(client.first())
            assert isinstance(first, sasl.Challenge)
            result = await mech.step(client.final(first.data))
            assert isinstance(result, sasl.Success) and client.verify_server(result.data or b"")
        mech = sasl.create_mechanism("PLAIN", domain=DOMAIN, accounts=storage.accounts,
                                     channel_bindings={}, offered=ALL[2:])
        assert await mech.step(b"\0alice\0secret") == sasl.Success("alice", None)
    finally:
        storage.close()
