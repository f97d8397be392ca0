"""Server-side SASL for client streams: which mechanisms to offer, and building one.

The negotiation step calls :func:`offered_mechanisms` to fill
``<mechanisms/>``, then :func:`create_mechanism` for the one the client picks,
and feeds :meth:`Mechanism.step` until it returns :class:`Success` or
:class:`Failure`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from fedxmpp.c2s.mechanism import Challenge, Failure, Mechanism, Success
from fedxmpp.c2s.plain import PlainMechanism
from fedxmpp.c2s.scram import HASHES, ScramMechanism
from fedxmpp.storage import AccountStore
from fedxmpp.storage.credentials import ScramCredentials

__all__ = ["Challenge", "Failure", "Mechanism", "Success", "create_mechanism", "offered_mechanisms"]

_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1")


def offered_mechanisms(*, tls: bool, channel_bindings: Mapping[str, bytes],
                       allow_plain: bool) -> list[str]:
    """Mechanism names to advertise, most preferred first.

    The -PLUS variants only when the TLS layer supplied channel-binding data;
    PLAIN only on TLS, and only if the configuration allows it.
    """
    names: list[str] = []
    if channel_bindings:
        names.extend(f"{name}-PLUS" for name in _PREFERENCE)
    names.extend(_PREFERENCE)
    if tls and allow_plain:
        names.append(PlainMechanism.name)
    return names


def create_mechanism(name: str, *, domain: str, accounts: AccountStore,
                     channel_bindings: Mapping[str, bytes],
                     offered: Sequence[str]) -> Mechanism:
    """A fresh exchange of mechanism *name* for an account of *domain*.

    Raises KeyError if *name* is unknown or was not among *offered* (the client
    must pick from what was advertised).
    """
    if name not in offered:
        raise KeyError(name)
    if name == PlainMechanism.name:
        return PlainMechanism(domain=domain, accounts=accounts)
    base = name.removesuffix("-PLUS")
    if base not in HASHES or (name != base and not channel_bindings):
        raise KeyError(name)
    hash_name = HASHES[base]

    async def lookup(user: str) -> ScramCredentials | None:
        return await accounts.scram_credentials(user, domain, hash_name)

    return ScramMechanism(
        name,
        domain=domain,
        lookup=lookup,
        channel_bindings=channel_bindings,
        plus_offered=any(m.endswith("-PLUS") for m in offered),
        fake_iterations=accounts.scram_iterations,
    )
