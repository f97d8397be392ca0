"""The context of client streams, in a module of its own so that the c2s modules
import it without importing the listeners that build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import interfaces

from fedxmpp.config import Config
from fedxmpp.hooks import Hooks
from fedxmpp.router import StanzaRouting
from fedxmpp.tls import CertificateStore


@dataclass
class C2SContext:
    """Everything a client stream needs, injected once by the application."""

    config: Config
    domains: frozenset[str]
    router: StanzaRouting  # the ClientOutbound front, in the application
    hooks: Hooks
    sessions: Any  # fedxmpp.im.sessions.SessionManager; transports do not import im
    accounts: Any  # fedxmpp.storage.AccountStore
    certificates: CertificateStore
    clock: interfaces.IReactorTime
    # fedxmpp.c2s.sm.StreamManagement (XEP-0198), set by the application.
    sm: Any = None
    # fedxmpp.c2s.throttle.AuthThrottle: failed authentications per address.
    auth_throttle: Any = None
    #: Completed SASL exchanges by (mechanism, "ok" or "failed"), for the metrics.
    logins: dict[tuple[str, str], int] = field(default_factory=dict)
