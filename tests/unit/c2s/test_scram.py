"""The server-side SCRAM state machine (RFC 5802, RFC 7677, channel binding)."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted

from fedxmpp.c2s.mechanism import MAX_MESSAGE, Challenge, Failure, Success
from fedxmpp.c2s.scram import ScramMechanism, decode_saslname
from fedxmpp.storage import StorageError
from fedxmpp.storage.credentials import derive, derive_all

from tests.unit.c2s.scram_client import ScramClient
from tests.unit.storage.fakes import MemoryAccountStore

DOMAIN = "example.test"
EXPORTER = bytes(range(32))
END_POINT = b"\xaa" * 32
BINDINGS = {"tls-exporter": EXPORTER, "tls-server-end-point": END_POINT}


@pytest.fixture
def accounts() -> MemoryAccountStore:
    store = MemoryAccountStore()
    store.put("alice", DOMAIN, derive_all("secret", 4096))
    return store


def make(accounts: MemoryAccountStore, name: str = "SCRAM-SHA-256", *,
         bindings: dict[str, bytes] | None = None, plus_offered: bool | None = None,
         nonce: str | None = None) -> ScramMechanism:
    bindings = {} if bindings is None else bindings
    hash_name = "sha-1" if name.startswith("SCRAM-SHA-1") else "sha-256"

    async def lookup(user: str):
        return await accounts.scram_credentials(user, DOMAIN, hash_name)

    extra = {} if nonce is None else {"nonce": lambda: nonce}
    return ScramMechanism(name, domain=DOMAIN, lookup=lookup, channel_bindings=bindings,
                          plus_offered=bool(bindings) if plus_offered is None else plus_offered,
                          fake_iterations=accounts.scram_iterations, **extra)


async def run(mech: ScramMechanism, client: ScramClient) -> Challenge | Success | Failure:
    first = await mech.step(client.first())
    if not isinstance(first, Challenge):
        return first
    return await mech.step(client.final(first.data))


# --- RFC test vectors ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_rfc5802_scram_sha1_vector():
    """Driven with RFC 5802 §5's nonces and salt, the server sends exactly the
    RFC's server-first and server-final messages."""
    store = MemoryAccountStore()
    store.put("user", DOMAIN, {"sha-1": derive("pencil", "sha-1", 4096,
                                               base64.b64decode("QSXCR+Q6sek8bf92"))})
    mech = make(store, "SCRAM-SHA-1", nonce="3rfcNHYJY1ZVvWVs7j")
    first = await mech.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert first == Challenge(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    final = await mech.step(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                            b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    assert final == Success("user", b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


@pytest_twisted.ensureDeferred
async def test_rfc7677_scram_sha256_vector():
    """Driven with RFC 7677 §3's nonces and salt, the server sends exactly the
    RFC's server-first and server-final messages."""
    store = MemoryAccountStore()
    store.put("user", DOMAIN, {"sha-256": derive("pencil", "sha-256", 4096,
                                                 base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))})
    mech = make(store, "SCRAM-SHA-256", nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    first = await mech.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == Challenge(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                              b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    final = await mech.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == Success("user", b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


# --- full exchanges -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_full_exchange(accounts, name):
    """A client that knows the password authenticates and can verify the server."""
    client = ScramClient(name, "alice", "secret")
    result = await run(make(accounts, name), client)
    assert isinstance(result, Success) and result.user == "alice"
    assert result.data is not None and client.verify_server(result.data)


@pytest.mark.parametrize("name", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
@pytest_twisted.ensureDeferred
async def test_plus_with_each_binding_type(accounts, name, cb_type):
    """-PLUS succeeds with each channel-binding type the TLS layer supplies when
    the client binds to the same data."""
    client = ScramClient(name, "alice", "secret", cbflag=f"p={cb_type}", cb_data=BINDINGS[cb_type])
    result = await run(make(accounts, name, bindings=BINDINGS), client)
    assert isinstance(result, Success) and client.verify_server(result.data or b"")


@pytest_twisted.ensureDeferred
async def test_plus_with_other_binding_data_fails(accounts):
    """Binding data that differs from this connection's (a MITM) fails with not-authorized."""
    client = ScramClient("SCRAM-SHA-256-PLUS", "alice", "secret", cbflag="p=tls-exporter",
                         cb_data=b"\x00" * 32)
    result = await run(make(accounts, "SCRAM-SHA-256-PLUS", bindings=BINDINGS), client)
    assert result == Failure("not-authorized", "channel binding mismatch")


@pytest_twisted.ensureDeferred
async def test_plus_with_unavailable_binding_type_fails(accounts):
    """A binding type this connection does not have (tls-unique) is refused at once."""
    client = ScramClient("SCRAM-SHA-256-PLUS", "alice", "secret", cbflag="p=tls-unique")
    result = await make(accounts, "SCRAM-SHA-256-PLUS", bindings=BINDINGS).step(client.first())
    assert isinstance(result, Failure) and result.condition == "not-authorized"


@pytest.mark.parametrize("flag", ["n", "y"])
@pytest_twisted.ensureDeferred
async def test_plus_requires_binding(accounts, flag):
    """A -PLUS exchange whose client does not bind ('n' or 'y') is malformed."""
    client = ScramClient("SCRAM-SHA-256-PLUS", "alice", "secret", cbflag=flag)
    result = await make(accounts, "SCRAM-SHA-256-PLUS", bindings=BINDINGS).step(client.first())
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_binding_flag_on_plain_scram_is_malformed(accounts):
    """'p=' with a non-PLUS mechanism is malformed (RFC 5802 §6)."""
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", cbflag="p=tls-exporter",
                         cb_data=EXPORTER)
    result = await make(accounts, "SCRAM-SHA-256", bindings=BINDINGS).step(client.first())
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_y_flag_detects_downgrade(accounts):
    """'y' (client can bind, thinks the server cannot) while -PLUS was offered
    means the offer was stripped: not-authorized."""
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", cbflag="y")
    result = await make(accounts, "SCRAM-SHA-256", bindings=BINDINGS, plus_offered=True).step(client.first())
    assert result == Failure("not-authorized", "channel binding downgrade detected")


@pytest_twisted.ensureDeferred
async def test_y_flag_without_plus_offer_succeeds(accounts):
    """'y' is honest when no -PLUS was offered, and c= must then carry 'y,,'."""
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", cbflag="y")
    result = await run(make(accounts, "SCRAM-SHA-256", plus_offered=False), client)
    assert isinstance(result, Success)


# --- wrong credentials and unknown users ------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_wrong_password(accounts):
    """A wrong password fails at the proof step with not-authorized and no text."""
    result = await run(make(accounts), ScramClient("SCRAM-SHA-256", "alice", "wrong"))
    assert result == Failure("not-authorized")


@pytest_twisted.ensureDeferred
async def test_unknown_user_is_indistinguishable(accounts):
    """An unknown user gets a server-first of the same shape (16-byte salt, the
    configured iterations), the same salt every time, even spelled in another
    case, and fails at the proof exactly like a wrong password."""
    known = await make(accounts).step(ScramClient("SCRAM-SHA-256", "alice", "x").first())
    unknown1 = await make(accounts).step(ScramClient("SCRAM-SHA-256", "nobody", "x").first())
    unknown2 = await make(accounts).step(ScramClient("SCRAM-SHA-256", "NoBody", "x").first())
    assert isinstance(known, Challenge) and isinstance(unknown1, Challenge)
    assert isinstance(unknown2, Challenge)

    def fields(challenge: Challenge) -> dict[str, str]:
        return dict(item.split("=", 1) for item in challenge.data.decode().split(","))

    k, u1, u2 = fields(known), fields(unknown1), fields(unknown2)
    assert len(base64.b64decode(u1["s"])) == len(base64.b64decode(k["s"])) == 16
    assert u1["i"] == k["i"] == "4096"
    assert u1["s"] == u2["s"]
    assert len(u1["r"]) == len(k["r"])
    wrong = await run(make(accounts), ScramClient("SCRAM-SHA-256", "alice", "wrong"))
    missing = await run(make(accounts), ScramClient("SCRAM-SHA-256", "nobody", "wrong"))
    assert wrong == missing == Failure("not-authorized")


@pytest_twisted.ensureDeferred
async def test_unknown_user_never_succeeds_even_with_a_matching_proof(accounts, monkeypatch):
    """Even if the fake credentials happened to match the client's proof, an
    unknown user is refused: success needs a real account."""
    mech = make(accounts)
    monkeypatch.setattr(mech, "_fake_credentials", lambda name: derive("guess", "sha-256", 4096))
    result = await run(mech, ScramClient("SCRAM-SHA-256", "nobody", "guess"))
    assert result == Failure("not-authorized")


@pytest_twisted.ensureDeferred
async def test_unpreparable_username_fails_like_unknown(accounts):
    """A username that is not a valid localpart gets fake parameters and fails
    only at the proof, with not-authorized."""
    result = await run(make(accounts), ScramClient("SCRAM-SHA-256", "bad@name", "secret"))
    assert result == Failure("not-authorized")


@pytest_twisted.ensureDeferred
async def test_username_escapes_and_preparation(accounts):
    """=2C and =3D decode to ',' and '='... and the name is prepared (case-folded)."""
    accounts.put("a,b=c", DOMAIN, derive_all("pw", 4096))
    result = await run(make(accounts), ScramClient("SCRAM-SHA-256", "A,B=C", "pw"))
    assert isinstance(result, Success) and result.user == "a,b=c"


# --- authzid -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_authzid_of_own_account_is_accepted(accounts):
    """a= equal to the account's bare JID is allowed."""
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", authzid="Alice@Example.Test")
    assert isinstance(await run(make(accounts), client), Success)


@pytest.mark.parametrize("authzid", ["bob@example.test", "alice@other.test",
                                     "alice@example.test/res", "example.test"])
@pytest_twisted.ensureDeferred
async def test_other_authzid_is_refused(accounts, authzid):
    """Any other authorization identity fails with invalid-authzid."""
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", authzid=authzid)
    result = await make(accounts).step(client.first())
    assert result == Failure("invalid-authzid")


# --- malformed input ------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    b"",                                   # empty initial response ('=')
    b"n,,",                                # no bare message
    b"x,,n=alice,r=abc",                   # bad GS2 flag
    b"n",                                  # no header at all
    b"n,b=alice,n=alice,r=abc",            # authzid without a=
    b"n,,m=ext,n=alice,r=abc",             # mandatory extension
    b"n,,r=abc,n=alice",                   # wrong order
    b"n,,n=alice",                         # no nonce
    b"n,,n=al=2Xice,r=abc",                # bad escape
    b"n,,n=,r=abc",                        # empty username
    b"n,,n=alice,r=",                      # empty nonce
    b"n,,n=alice,r=ab\x7fc",               # non-printable nonce
    b"n,,n=\xff\xfe,r=abc",                # not UTF-8
    b"n,,n=alice,r=" + b"a" * MAX_MESSAGE,  # too long
])
@pytest_twisted.ensureDeferred
async def test_malformed_client_first(accounts, message):
    """Each syntactically broken client-first-message fails with malformed-request."""
    result = await make(accounts).step(message)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest.mark.parametrize("mutate", [
    lambda f: f.replace(b",p=", b",x="),                       # no proof
    lambda f: f[:f.index(b",p=") + 3] + b"!!!notbase64",       # proof not base64
    lambda f: f[:f.index(b",p=") + 3] + b"AAAA",                # proof too short
    lambda f: b"c=bi*s" + f[f.index(b","):],                    # binding not base64
    lambda f: f[f.index(b",") + 1:],                            # no c=
    lambda f: b"\xff" + f,                                      # not UTF-8
])
@pytest_twisted.ensureDeferred
async def test_malformed_client_final(accounts, mutate):
    """Each broken client-final-message fails with malformed-request."""
    mech = make(accounts)
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    first = await mech.step(client.first())
    assert isinstance(first, Challenge)
    result = await mech.step(mutate(client.final(first.data)))
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_nonce_must_be_the_servers(accounts):
    """A client-final with a nonce other than the combined one fails (replay)."""
    mech = make(accounts)
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    first = await mech.step(client.first())
    assert isinstance(first, Challenge)
    forged = first.data.replace(b"r=clientnonce123", b"r=clientnonce123X")
    result = await mech.step(client.final(forged))
    assert result == Failure("not-authorized", "nonce mismatch")


@pytest_twisted.ensureDeferred
async def test_server_nonce_is_random_and_extends_the_clients(accounts):
    """The server nonce starts with the client's and differs between exchanges."""
    a = await make(accounts).step(ScramClient("SCRAM-SHA-256", "alice", "x").first())
    b = await make(accounts).step(ScramClient("SCRAM-SHA-256", "alice", "x").first())
    assert isinstance(a, Challenge) and isinstance(b, Challenge)
    ra, rb = a.data.split(b",")[0], b.data.split(b",")[0]
    assert ra.startswith(b"r=clientnonce123") and len(ra) >= len(b"r=clientnonce123") + 16
    assert ra != rb


# --- flow ------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_no_initial_response_gets_an_empty_challenge(accounts):
    """Without an initial response the server asks with an empty challenge,
    then the exchange proceeds normally; a second None is malformed."""
    mech = make(accounts)
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    assert await mech.step(None) == Challenge(b"")
    first = await mech.step(client.first())
    assert isinstance(first, Challenge)
    assert isinstance(await mech.step(client.final(first.data)), Success)

    again = make(accounts)
    assert await again.step(None) == Challenge(b"")
    result = await again.step(None)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_nothing_after_the_end(accounts):
    """After Success the mechanism answers anything with malformed-request."""
    mech = make(accounts)
    assert isinstance(await run(mech, ScramClient("SCRAM-SHA-256", "alice", "secret")), Success)
    result = await mech.step(b"c=biws")
    assert isinstance(result, Failure) and result.condition == "malformed-request"


@pytest_twisted.ensureDeferred
async def test_storage_error_is_temporary_auth_failure(accounts):
    """A failing credential lookup becomes temporary-auth-failure."""
    accounts.broken = StorageError("database is locked")
    result = await make(accounts).step(ScramClient("SCRAM-SHA-256", "alice", "secret").first())
    assert result == Failure("temporary-auth-failure")


def test_decode_saslname():
    """saslname decoding accepts only =2C and =3D escapes and no NUL."""
    assert decode_saslname("a=2Cb=3Dc") == "a,b=c"
    assert decode_saslname("a=2c") is None
    assert decode_saslname("a=") is None
    assert decode_saslname("a\0b") is None
    assert decode_saslname("") is None
