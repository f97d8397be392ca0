"""Reloading a running server (SIGHUP, ``fedxmpp reload``) without dropping a session.

The configuration file is read again and the certificates are loaded again
(a certificate renewed on disk, a new certbot directory for a domain).  Of the
changed settings, those in :data:`RELOADABLE` take effect for what comes next
(new connections, new handshakes, new stream management sessions); any other
changed setting needs a restart: it is named in one log line (and in the
answer to ``fedxmpp reload``) and keeps its running value.  A file that does
not load, or a certificate that does not, changes nothing.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from fedxmpp.config import EMBEDDED, Config, ConfigError, load
from fedxmpp.tls import TLSSetupError

if TYPE_CHECKING:
    from fedxmpp.app import FedXmpp

log = Logger()

# section -> keys whose new value a running server takes; "*" = every key.
RELOADABLE: dict[str, frozenset[str]] = {
    "server": frozenset({"admins"}),
    "limits": frozenset({"*"}),
    "c2s": frozenset({"auth_timeout", "idle_timeout", "keepalive_interval", "sm_resume_timeout", "sm_max_queue",
                      "sm_ack_request_every", "sm_ack_request_delay", "sm_max_ack_delay"}),
    "auth": frozenset({"allow_plain", "max_attempts", "min_password_length", "failure_delay", "block_after",
                       "block_time", "account_block_after"}),
    # The components' secrets and settings; adding or removing one needs a restart.
    "components": frozenset({"component", "handshake_timeout", "idle_timeout", "keepalive_interval"}),
    "metrics": frozenset({"allow"}),
    "log": frozenset({"level"}),
}


class ReloadFailed(Exception):
    """Nothing was changed; the message (one line) says why."""


@dataclass
class ReloadResult:
    applied: list[str] = field(default_factory=list)  # the keys whose new value is in effect
    refused: list[str] = field(default_factory=list)  # changed keys that need a restart


def reload(app: FedXmpp) -> ReloadResult:
    """Read the configuration and certificates again and apply what can change."""
    old = app.config
    try:
        new = load(old.source) if old.source != EMBEDDED else old
    except ConfigError as e:
        raise ReloadFailed(str(e)) from None
    effective, result = merge(old, new)
    try:
        app.certificates.load()
    except TLSSetupError as e:
        raise ReloadFailed(f"{old.source}: tls.certificates: {e}") from None
    app.components.reconfigure(effective)
    app.config = app.features.config = app.c2s.config = effective
    app.s2s.ctx.limits = effective.limits
    app.metrics.allow_only(effective.metrics.allow)
    app.log_levels.set_level(effective.log.level)
    log.info("Reloaded {source}: certificates{changed}", source=old.source,
             changed="".join(f", {key}" for key in result.applied))
    if result.refused:
        log.warn("Reload of {source}: not applied, changing them needs a restart: {keys}", source=old.source,
                 keys=", ".join(result.refused))
    return result


def merge(old: Config, new: Config) -> tuple[Config, ReloadResult]:
    """*old* with the reloadable values of *new*; which changed keys were taken,
    which were refused."""
    result = ReloadResult()
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(old):
        if section.name == "source":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        taken: dict[str, Any] = {}
        for key in dataclasses.fields(before):
            value = getattr(after, key.name)
            if getattr(before, key.name) == value:
                continue
            name = f"{section.name}.{key.name}"
            allowed = RELOADABLE.get(section.name, frozenset())
            if ("*" in allowed or key.name in allowed) and _same_components(name, before, after):
                taken[key.name] = value
                result.applied.append(name)
            else:
                result.refused.append(name)
        sections[section.name] = dataclasses.replace(before, **taken) if taken else before
    return dataclasses.replace(old, **sections), result


def _same_components(name: str, before: Any, after: Any) -> bool:
    if name != "components.component":
        return True
    return {c.domain for c in before.component} == {c.domain for c in after.component}


def install_sighup(reactor: Any, app: FedXmpp) -> None:
    """Reload on SIGHUP instead of dying (its default action).  Call once the
    reactor runs, so that the handler is installed after the reactor's own."""

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(_reload_logged, app)

    signal.signal(signal.SIGHUP, on_signal)


def _reload_logged(app: FedXmpp) -> None:
    log.info("SIGHUP: reloading")
    try:
        reload(app)
    except ReloadFailed as e:
        log.error("Reload failed, nothing changed: {problem}", problem=str(e))
    except Exception:
        log.failure("Reload failed")
