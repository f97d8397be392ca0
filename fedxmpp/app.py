"""The composition root: storage, hooks, router, features and listeners in one service.

``twistd fedxmpp`` builds through :func:`build`, and so do the tests.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web.server import Site

from fedxmpp import features, keys, privileges
from fedxmpp.admin import server as admin_server
from fedxmpp.admin.adhoc import AdHocCommands
from fedxmpp.admin.logs import LogLevels
from fedxmpp.admin.metrics import MetricsResource, ReactorLag, metrics_root, registry
from fedxmpp.admin.status import SessionClock
from fedxmpp.c2s import scram
from fedxmpp.c2s.csi import ClientStateIndication
from fedxmpp.c2s.context import C2SContext
from fedxmpp.c2s.service import C2SFactory, direct_tls_factory
from fedxmpp.c2s.sm import StreamManagement
from fedxmpp.c2s.throttle import AuthThrottle
from fedxmpp.component.context import Components
from fedxmpp.component.service import ComponentFactory
from fedxmpp.config import Config, check_certificates_dir, with_backlog
from fedxmpp.hooks import Hooks
from fedxmpp.http.listener import HttpService, tls_factory
from fedxmpp.im import service as im_service
from fedxmpp.im.context import Disco, ServerContext
from fedxmpp.im.delivery import LocalDelivery
from fedxmpp.im.sessions import SessionManager
from fedxmpp.proxy65.service import Proxy65
from fedxmpp.muc.service import MucService
from fedxmpp.router import Router
from fedxmpp.s2s.dialback import DialbackKeys
from fedxmpp.s2s.resolver import S2SResolver
from fedxmpp.s2s.service import Federation, ListenError
from fedxmpp.storage import Storage, StorageError, open_storage
from fedxmpp.tls import CertificateStore
from fedxmpp.upload.service import Upload, load_key
from fedxmpp.xml.errors import StreamError

log = Logger()

# Seconds that shutdown waits for clients to read their closing stream error.
SHUTDOWN_GRACE = 3.0
# Seconds that shutdown waits for clients' stanzas to settle before their last ack.
SETTLE_GRACE = 2.0


class FedXmpp(MultiService):
    """One server process: every transport around one router."""

    def __init__(self, config: Config, reactor: Any, *, storage: Storage | None = None,
                 certificates: CertificateStore | None = None, resolver: S2SResolver | None = None) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.hooks = Hooks()
        # [log] level, applied to twistd's log observer by fedxmpp.tap once the reactor runs.
        self.log_levels = LogLevels(config.log.level)
        self.router = Router(config.server.domains)
        self.sessions = SessionManager()
        self.delivery = LocalDelivery(self.hooks, self.sessions, self.router)
        self.router.set_local(self.delivery)
        self.features = ServerContext(config=config, hooks=self.hooks, router=self.router, sessions=self.sessions,
                                      clock=reactor, disco=Disco())
        # RFC 6121 core (roster, presence, offline) before the features, which may use it.
        self.im = im_service.install(self.features)
        for feature in features.ENABLED:
            feature.register(self.hooks, self.features)
        if certificates is None:
            check_certificates_dir(config)
        if certificates is None or storage is None or config.upload.domain:
            _make_private_dir(config)
        # The HTTP listener and XEP-0363 upload on it, when configured.
        self.http = HttpService(config.http)
        self.upload = (Upload(config.upload, self.http, self.router, self.hooks, reactor, _upload_key(config))
                       if config.upload.domain else None)
        if self.upload is not None:
            self.features.disco.item_providers.append(self.upload.disco_items)
        # Components' domains too (and the MUC service's): each federates under its own name.
        if certificates is None:
            certificates = CertificateStore(config.tls.certificates, config.server.domains,
                                            self_signed=config.tls.self_signed,
                                            component_domains=[c.domain for c in config.components.component]
                                            + ([config.muc.domain] if config.muc.domain else []))
            certificates.load()
        self.certificates = certificates
        self.storage: Storage | None = None
        # Client stanzas pass the user's own server (pre- events) on their way to the router.
        self.c2s = C2SContext(config=config, domains=frozenset(config.server.domains), router=self.im.outbound,
                              hooks=self.hooks, sessions=self.sessions, accounts=None,
                              certificates=self.certificates, clock=reactor, auth_throttle=AuthThrottle(reactor))
        # XEP-0198 stream management and XEP-0352 client state indication.
        self.c2s.sm = StreamManagement(self.c2s)
        ClientStateIndication(self.c2s)
        self.c2s_factory = C2SFactory(self.c2s)
        # XEP-0114 components; the roster is looked up when a privileged request needs it.
        self.components = Components(config, self.router, self.hooks, reactor, roster=lambda: self.features.roster,
                                     user_route=self.im.outbound.route)
        self.features.disco.item_providers.append(self.components.disco_items)
        self.component_factory = ComponentFactory(self.components)
        # XEP-0065 SOCKS5 bytestreams proxy at a domain of its own, when configured.
        self.proxy65 = Proxy65(config.proxy65, self.router, reactor) if config.proxy65.domain else None
        if self.proxy65 is not None:
            self.features.disco.item_providers.append(self.proxy65.disco_items)
        # XEP-0045 group chat: an in-process service routed like a component.
        self.muc = MucService(config.muc, config.server.domains, self.router, reactor) if config.muc.domain else None
        if self.muc is not None:
            muc = self.muc
            self.features.disco.item_providers.append(muc.disco_items)
            self.hooks.add("storage/flush", lambda _: muc.flushed())
        # Federation: the route for every domain that is neither hosted nor a component's.
        self.s2s = Federation(config, self.router, self.certificates, reactor, resolver=resolver)
        self.router.set_default(self.s2s.outgoing)
        self.session_clock = SessionClock(self)
        # XEP-0050 ad-hoc commands: the XEP-0133 set for [server] admins.
        self.adhoc = AdHocCommands(self)
        # Prometheus metrics at /metrics on the HTTP listener and on [metrics] listen.
        self.reactor_lag = ReactorLag(reactor)
        self.metrics = MetricsResource(registry(self, self.reactor_lag), config.metrics.allow,
                                       self.http.client_address)
        self.http.add(b"metrics", self.metrics)
        self.ports: list[Any] = []
        self.ready: defer.Deferred[None] = defer.Deferred()
        if storage is not None:
            self._use_storage(storage)

    def _use_storage(self, storage: Storage) -> None:
        self.storage = storage
        self.c2s.accounts = storage.accounts
        self.features.storage = storage
        self.c2s.sm.store = storage.sm_pending

    def startService(self) -> None:
        super().startService()
        d = defer.Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_to_start)
        d.chainDeferred(self.ready)

    async def _start(self) -> None:
        storage = self.storage
        if storage is None:
            try:
                storage = await open_storage(self.config, self.reactor)
            except StorageError as e:
                raise StartupError(f"{self.config.source}: storage.url: {e}") from None
            self._use_storage(storage)
        if self.muc is not None:
            await self.muc.load(storage.muc)
        try:
            self.ports.append(admin_server.listen(self.reactor, self.config.server.admin_socket, self))
        except admin_server.AdminSocketInUse as e:
            raise StartupError(f"{self.config.source}: server.admin_socket: {e}") from None
        self._use_server_secret()
        # What hibernating sessions held when the server last died goes to offline
        # storage or back to its senders, before anyone can log in.
        await self.c2s.sm.recover()
        backlog = self.config.server.listen_backlog
        for key, factory in (("listen", self.c2s_factory),
                             ("direct_tls", direct_tls_factory(self.c2s_factory, self.certificates))):
            for description in getattr(self.config.c2s, key):
                try:
                    port = await serverFromString(self.reactor, with_backlog(description, backlog)).listen(factory)
                except CannotListenError as e:
                    raise StartupError(f"{self.config.source}: c2s.{key}: cannot listen on {description!r}: {e.socketError}") from None
                self.ports.append(port)
                log.info("Listening for clients ({kind}) on {address}",
                         kind="STARTTLS" if key == "listen" else "direct TLS", address=port.getHost())
        # Only with components configured: nothing else could authenticate there.
        for description in self.config.components.listen if self.config.components.component else ():
            try:
                port = await serverFromString(self.reactor, with_backlog(description, backlog)).listen(
                    self.component_factory)
            except CannotListenError as e:
                raise StartupError(f"{self.config.source}: components.listen: cannot listen on {description!r}: {e.socketError}") from None
            self.ports.append(port)
            log.info("Listening for components on {address}", address=port.getHost())
        proxy65 = self.proxy65
        for description in self.config.proxy65.listen if proxy65 is not None else ():
            assert proxy65 is not None
            try:
                port = await serverFromString(self.reactor, with_backlog(description, backlog)).listen(
                    proxy65.factory())
            except CannotListenError as e:
                raise StartupError(f"{self.config.source}: proxy65.listen: cannot listen on {description!r}: {e.socketError}") from None
            self.ports.append(port)
            log.info("SOCKS5 bytestreams proxy on {address}", address=port.getHost())
        if self.upload is not None:
            try:
                self.upload.start()
            except OSError as e:
                raise StartupError(f"{self.config.source}: upload.storage_dir: cannot use "
                                   f"{str(self.config.upload.storage_dir)!r}: {e.strerror}") from None
        site = self.http.site()
        for key, http_factory in (("listen", site), ("tls_listen", tls_factory(site, self.certificates)
                                                                   if self.config.http.tls_listen else None)):
            for description in getattr(self.config.http, key):
                try:
                    port = await serverFromString(self.reactor, with_backlog(description, backlog)).listen(http_factory)
                except CannotListenError as e:
                    raise StartupError(f"{self.config.source}: http.{key}: cannot listen on {description!r}: {e.socketError}") from None
                self.ports.append(port)
                log.info("Listening for HTTP ({kind}) on {address}", kind="TLS" if key == "tls_listen" else "plain",
                         address=port.getHost())
        metrics_site = Site(metrics_root(self.metrics))
        metrics_site.displayTracebacks = False
        for description in self.config.metrics.listen:
            try:
                port = await serverFromString(self.reactor, with_backlog(description, backlog)).listen(metrics_site)
            except CannotListenError as e:
                raise StartupError(f"{self.config.source}: metrics.listen: cannot listen on {description!r}: {e.socketError}") from None
            self.ports.append(port)
            log.info("Serving metrics on {address}", address=port.getHost())
        self.reactor_lag.start()
        try:
            await self.s2s.listen()
        except ListenError as e:
            raise StartupError(f"{self.config.source}: {e}") from None
        server = self.config.server
        if server.user and os.geteuid() == 0:
            owned = [server.data_dir, server.admin_socket]
            if self.upload is not None:
                owned.append(self.config.upload.storage_dir)
            try:
                privileges.drop(server.user, server.group, owned)
            except (privileges.PrivilegeError, OSError) as e:
                raise StartupError(f"{self.config.source}: server.user: cannot switch to "
                                   f"{server.user!r}: {e}") from None
        elif server.user and pwd.getpwuid(os.geteuid()).pw_name != server.user:
            log.warn("server.user is {user}, but fedxmpp was not started as root: it runs as {actual}",
                     user=server.user, actual=pwd.getpwuid(os.geteuid()).pw_name)
        log.info("fedxmpp serving {domains}", domains=", ".join(self.config.server.domains))
        if os.geteuid() == 0:
            log.warn("fedxmpp runs as root: set [server] user, or run it as an unprivileged user "
                     "(etc/fedxmpp.service shows how)")

    def _use_server_secret(self) -> None:
        server = self.config.server
        given = server.secret_file != Path()
        path = server.secret_file if given else server.data_dir / "server.key"
        try:
            secret = keys.load(path, create=not given)
        except keys.SecretError as e:
            raise StartupError(f"{self.config.source}: server.secret_file: {e}") from None
        self.s2s.ctx.keys = DialbackKeys(keys.derive(secret, "dialback"))
        scram.use_secret(keys.derive(secret, "scram-unknown-users"))

    def _failed_to_start(self, failure: Any) -> None:
        if failure.check(StartupError):
            log.critical("fedxmpp: {problem}", problem=failure.value)
        else:
            log.failure("fedxmpp failed to start", failure)
        if self.reactor.running:
            # twistd would exit 0 after a plain stop; a supervisor must see the failure.
            self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
            self.reactor.stop()

    async def _stop(self) -> None:
        self.reactor_lag.stop()
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        self.ports.clear()
        await self.s2s.stop_listening()
        self.s2s.shutdown()
        if self.proxy65 is not None:
            self.proxy65.shutdown()
        if self.upload is not None:
            self.upload.stop()
        # Sessions waiting to be resumed end now, while storage can take what they hold.
        self.c2s.sm.shutdown()
        if self.muc is not None:
            self.muc.shutdown()
        factories = (self.c2s_factory, self.component_factory)
        streams = [stream for factory in factories for stream in factory.streams]
        # Read nothing more, and let what was read settle, so that the last
        # <a h/> each stream-managed client gets covers all it sent.
        for stream in streams:
            stream.hold_reading(True)
        await self._settle_sessions()
        for stream in streams:
            stream.fail(StreamError("system-shutdown", "The server is shutting down"))
        waited = 0.0
        while (any(factory.streams for factory in factories) or self.s2s.streams) and waited < SHUTDOWN_GRACE:
            await _sleep(self.reactor, 0.05)
            waited += 0.05
        for stream in [stream for factory in factories for stream in factory.streams]:
            stream.transport.abortConnection()
        self.s2s.abort()
        # Every queued write (archive rows, offline messages, hibernation queues)
        # commits before storage closes; twice, for what the first round started.
        for _ in range(2):
            await self.hooks.gather("storage/flush")
        if self.storage is not None:
            self.storage.close()
            self.storage = None

    async def _settle_sessions(self) -> None:
        """Commit what is queued, and give stanzas still on their way through a
        chain that waits (a blocklist or archive preferences being read) a
        bounded moment to settle too."""
        waited = 0.0
        while True:
            await self.hooks.gather("storage/flush")
            settling = any((settlement := getattr(s, "settlement", None)) is not None and settlement.pending
                           for s in self.sessions.all())
            if not settling or waited >= SETTLE_GRACE:
                return
            await _sleep(self.reactor, 0.01)
            waited += 0.01

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())


class StartupError(Exception):
    """Start-up could not complete; the message is for the operator."""


def _sleep(clock: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _make_private_dir(config: Config) -> None:
    """Create data_dir readable by the server's user only (it holds keys and the database)."""
    try:
        config.server.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"{config.source}: server.data_dir: cannot create {str(config.server.data_dir)!r}: "
                           f"{e.strerror}") from None


def _upload_key(config: Config) -> bytes:
    path = config.server.data_dir / "upload.key"
    try:
        return load_key(path)
    except OSError as e:
        raise StartupError(f"{config.source}: server.data_dir: cannot read or create {str(path)!r}: "
                           f"{e.strerror}") from None


def build(config: Config, reactor: Any, *, storage: Storage | None = None,
          certificates: CertificateStore | None = None, resolver: S2SResolver | None = None) -> FedXmpp:
    """The whole server for *config*, ready to be started.

    twistd passes only the two; tests inject fakes for the rest: *storage* (opened
    at start otherwise; when given, it is in use at once), *certificates* (used as
    given, not loaded: found or generated under ``tls.certificates`` otherwise)
    and the federation *resolver* (DNS per ``s2s`` otherwise).  With storage and
    certificates injected (and no upload), building touches no file.
    """
    return FedXmpp(config, reactor, storage=storage, certificates=certificates, resolver=resolver)
