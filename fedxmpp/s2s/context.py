"""What both directions of federation share, injected once by the application."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import interfaces

from fedxmpp.config import LimitsConfig, S2SConfig
from fedxmpp.router import Router
from fedxmpp.s2s.dialback import DialbackKeys
from fedxmpp.tls import CertificateStore, PeerVerifier


@dataclass
class S2SContext:
    config: S2SConfig
    limits: LimitsConfig
    router: Router
    certificates: CertificateStore
    verifier: PeerVerifier
    keys: DialbackKeys
    clock: interfaces.IReactorTime

    def is_local(self, domain: str) -> bool:
        """A domain we speak for: hosted, or a component's (the router knows)."""
        return domain in self.router.hosted or self.router.has_route(domain)

    def has_certificate(self, domain: str) -> bool:
        """Whether we hold a certificate for *domain* (hosted, or a component's)."""
        return domain in self.certificates.domains()
