"""Prometheus metrics: what the server holds, read when ``/metrics`` is scraped.

Nothing here sits on the per-stanza path: the collector reads the state the
server keeps anyway (sessions, s2s queues, the router's count per stanza kind,
the completed logins, the write queues) at scrape time.  Features that keep a
write queue report its length through the ``"metrics/backlog"`` hook: each
handler sets its entry in the dict it is given.  The reactor's lag is measured
by a timer that notes how late it fires.

The page is served at ``/metrics`` on the HTTP listener, and on the listeners of
``[metrics] listen`` (for a server without an HTTP listener); only clients in
``[metrics] allow`` (loopback by default) may read it, for the figures reveal
how many users are online.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric,
                                   SummaryMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

import fedxmpp
from fedxmpp.admin.status import summary

if TYPE_CHECKING:
    from fedxmpp.app import FedXmpp

# Seconds between two measurements of the reactor's lag.
LAG_INTERVAL = 1.0


class ReactorLag:
    """How late a timer set for every :data:`LAG_INTERVAL` seconds fires: the
    time the reactor was busy elsewhere (or blocked) when it was due."""

    def __init__(self, clock: Any, interval: float = LAG_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        #: The lag of the last measurement, and all of them added up.
        self.last = 0.0
        self.total = 0.0
        self.samples = 0
        self._due = 0.0
        self._call: Any = None  # an IDelayedCall

    def start(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.last = max(0.0, now - self._due)
        self.total += self.last
        self.samples += 1
        self._due = now + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)


class ServerCollector:
    """A prometheus_client collector that reads the server's state at scrape time."""

    def __init__(self, app: FedXmpp, lag: ReactorLag) -> None:
        self.app = app
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        app = self.app
        info = InfoMetricFamily("fedxmpp_build", "The fedxmpp version running")
        info.add_metric([], {"version": fedxmpp.__version__})
        yield info
        now = summary(app)
        yield GaugeMetricFamily("fedxmpp_uptime_seconds", "Seconds since the server started", value=now.uptime)

        sessions = GaugeMetricFamily("fedxmpp_sessions", "Sessions by kind and state", labels=["kind", "state"])
        sessions.add_metric(["c2s", "bound"], now.c2s)
        sessions.add_metric(["c2s", "hibernating"], now.hibernating)
        sessions.add_metric(["s2s_in", "open"], now.s2s_in)
        sessions.add_metric(["s2s_out", "open"], now.s2s_out)
        sessions.add_metric(["component", "authenticated"], now.components)
        yield sessions

        logins = CounterMetricFamily("fedxmpp_logins", "Completed SASL authentications by mechanism and outcome",
                                     labels=["mechanism", "outcome"])
        for (mechanism, outcome), count in sorted(app.c2s.logins.items()):
            logins.add_metric([mechanism, outcome], count)
        yield logins

        yield CounterMetricFamily("fedxmpp_connections_refused",
                                  "Client connections closed at accept: over [limits] per-address bounds",
                                  value=app.c2s_factory.admission.refused)

        routed = CounterMetricFamily("fedxmpp_stanzas_routed", "Stanzas passed to the router, by kind",
                                     labels=["kind"])
        for kind, count in sorted(app.router.routed_kinds.items()):
            routed.add_metric([kind], count)
        yield routed

        outgoing = app.s2s.outgoing
        yield GaugeMetricFamily("fedxmpp_s2s_queued_stanzas",
                                "Stanzas waiting for an outgoing server-to-server link, all domains",
                                value=outgoing.queued)
        yield GaugeMetricFamily("fedxmpp_s2s_destinations", "Remote domains with a link or a queue",
                                value=len(outgoing.destinations))
        failures = CounterMetricFamily("fedxmpp_s2s_link_failures",
                                       "Outgoing links that could not be established, by the condition "
                                       "their stanzas bounced with", labels=["condition"])
        for condition, count in sorted(outgoing.failures.items()):
            failures.add_metric([condition], count)
        yield failures

        backlog: dict[str, int] = {}
        app.hooks.fire("metrics/backlog", backlog)
        writes = GaugeMetricFamily("fedxmpp_storage_write_backlog", "Rows waiting to be written, by store",
                                   labels=["store"])
        for store, count in sorted(backlog.items()):
            writes.add_metric([store], count)
        yield writes

        yield GaugeMetricFamily("fedxmpp_reactor_lag_last_seconds",
                                f"How late the last {self.lag.interval:g} s timer fired", value=self.lag.last)
        yield SummaryMetricFamily("fedxmpp_reactor_lag_seconds", "How late the timer fired, all measurements",
                                  count_value=self.lag.samples, sum_value=self.lag.total)


def registry(app: FedXmpp, lag: ReactorLag) -> CollectorRegistry:
    """A registry of this server's own (not prometheus_client's process-global one,
    so that every server built in one process reports only itself)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServerCollector(app, lag))
    return reg


class MetricsResource(Resource):
    """``/metrics``: the text exposition format, for allowed clients only."""

    isLeaf = True

    def __init__(self, reg: CollectorRegistry, allow: tuple[str, ...],
                 client_address: Callable[[Request], str]) -> None:
        super().__init__()
        self.registry = reg
        self.allow_only(allow)
        self.client_address = client_address

    def allow_only(self, allow: tuple[str, ...]) -> None:
        """Serve the clients in these networks (validated by the configuration)."""
        self.allow = [ipaddress.ip_network(a, strict=False) for a in allow]

    def render_GET(self, request: Request) -> bytes:
        if not self._allowed(self.client_address(request)):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Forbidden\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)

    def _allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow)


def metrics_root(resource: MetricsResource) -> Resource:
    """The resource tree of a metrics-only listener: ``/metrics`` and nothing else."""
    root = Resource()
    root.putChild(b"metrics", cast(IResource, resource))
    return root
