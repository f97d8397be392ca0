"""What the admin commands report of a running server, and kicking users.

Pure functions of the application object: the admin socket (and, later, the
XEP-0133 ad-hoc commands) present them; nothing here writes to a socket.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fedxmpp
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID

if TYPE_CHECKING:
    from fedxmpp.app import FedXmpp

# The stream error a kicked session gets: the operator's local policy ended it
# (RFC 6120 §4.9.3.14), as ejabberd does for a kick; the text says why.
KICK_CONDITION = "policy-violation"
KICK_TEXT = "Disconnected by the server administrator"


@dataclass(frozen=True)
class Summary:
    version: str
    uptime: float
    c2s: int
    hibernating: int
    s2s_in: int
    s2s_out: int
    components: int


@dataclass(frozen=True)
class ConnectedSession:
    jid: str
    address: str
    since: float  # seconds since the epoch
    tls: str  # the protocol version, e.g. "TLSv1.3", or "no"
    sm: str  # "off", "on", "resumable" or "hibernating"


class SessionClock:
    """Remembers when each client session bound its resource (for ``connected``)."""

    def __init__(self, app: FedXmpp) -> None:
        self.clock = app.reactor
        self.started = self.clock.seconds()
        self._bound: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        app.hooks.add("c2s/session-bound", self._session_bound)

    def _session_bound(self, session: Any) -> None:
        self._bound.setdefault(session, self.clock.seconds())

    def since(self, session: Any) -> float:
        return self._bound.get(session, self.started)


def summary(app: FedXmpp) -> Summary:
    hibernating = len(app.c2s.sm.hibernating) if app.c2s.sm is not None else 0
    return Summary(
        version=fedxmpp.__version__,
        uptime=app.reactor.seconds() - app.session_clock.started,
        c2s=max(app.sessions.count - hibernating, 0),
        hibernating=hibernating,
        s2s_in=len([s for s in app.s2s.incoming.streams if not s.closed]),
        s2s_out=len([s for s in app.s2s.outgoing.streams if not s.closed]),
        components=len(app.components.sessions),
    )


def connected(app: FedXmpp) -> list[ConnectedSession]:
    """Every bound client session, hibernating ones included, by full JID."""
    out = []
    for session in app.sessions.all():
        out.append(ConnectedSession(
            jid=session.address.full(),
            address=_address(session),
            since=app.session_clock.since(session),
            tls=_tls(session),
            sm=_sm(session),
        ))
    return sorted(out, key=lambda s: s.jid)


def kick(app: FedXmpp, jid: JID, reason: str = "") -> int:
    """End the sessions of *jid* (a bare JID: all of them) with a stream error,
    hibernating ones included (they cannot be resumed); how many were ended."""
    if jid.resource is None:
        sessions = app.sessions.resources(jid)
    else:
        one = app.sessions.get(jid)
        sessions = [one] if one is not None else []
    sessions = [s for s in sessions if not _ending(s)]
    for session in sessions:
        session.close(StreamError(KICK_CONDITION, reason or KICK_TEXT))
    return len(sessions)


def _ending(session: Any) -> bool:
    """Its stream was closed (a stream error sent) and it waits for the peer to
    close the connection: kicking it again would end nothing."""
    managed = getattr(session, "sm", None)
    if managed is not None and managed.hibernating:
        return False
    return getattr(session.stream, "close_reason", None) is not None


def _address(session: Any) -> str:
    managed = getattr(session, "sm", None)
    if managed is not None and managed.hibernating:
        return "-"
    link: Any = getattr(session.stream, "link", None)
    if link is None or getattr(session.stream, "transport", None) is None:
        return "-"
    return str(link.peer_address())


def _tls(session: Any) -> str:
    link: Any = getattr(session.stream, "link", None)
    if link is None or getattr(session.stream, "transport", None) is None:
        return "no"
    version = link.tls_version()
    return "no" if version is None else str(version)


def _sm(session: Any) -> str:
    managed = getattr(session, "sm", None)
    if managed is None:
        return "off"
    if managed.hibernating:
        return "hibernating"
    return "resumable" if managed.resume_id is not None else "on"
