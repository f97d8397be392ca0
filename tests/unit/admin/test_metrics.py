"""The Prometheus metrics at /metrics, on a server built through app.build with a
fake reactor: read at scrape time, parsed with prometheus_client's own parser,
and refused to clients outside ``[metrics] allow``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest
from twisted.words.xish import domish

from fedxmpp import app, config
from fedxmpp.admin import reload
from fedxmpp.xml.jid import JID
from tests.unit.admin.test_status import bind


def server(tmp_path: Path, extra: str = "") -> app.FedXmpp:
    path = tmp_path / "fedxmpp.toml"
    path.write_text('[server]\ndomains = ["example.test"]\ndata_dir = "data"\n[auth]\nscram_iterations = 4096\n'
                    + extra)
    return app.build(config.load(path), MemoryReactorClock())


def scrape(srv: app.FedXmpp, address: Any = None) -> DummyRequest:
    request = DummyRequest([b"metrics"])
    request.client = address or IPv4Address("TCP", "127.0.0.1", 40000)
    body = srv.metrics.render_GET(request)
    request.write(body)
    return request


def samples(srv: app.FedXmpp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = scrape(srv)
    assert request.responseCode in (None, 200)
    text = b"".join(request.written).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_sessions_routed_stanzas_logins_and_s2s_are_read_at_scrape_time(tmp_path):
    """Bound sessions, stanzas routed by kind, completed logins by mechanism and
    outcome, the s2s queue and link failures appear as the server holds them."""
    srv = server(tmp_path)
    bind(srv, "ann@example.test", "a", 1000)
    bind(srv, "ben@example.test", "b", 1001)
    for name in ("message", "message", "presence", "iq"):
        stanza = domish.Element((None, name))
        srv.router.route(stanza, JID.parse("ann@example.test/a"), JID.parse("nobody@example.test"))
    srv.c2s.logins[("SCRAM-SHA-256", "ok")] = 2
    srv.c2s.logins[("PLAIN", "failed")] = 1
    srv.s2s.outgoing.count_failure("remote-server-not-found")
    got = samples(srv)
    assert got[("fedxmpp_sessions", (("kind", "c2s"), ("state", "bound")))] == 2
    assert got[("fedxmpp_sessions", (("kind", "c2s"), ("state", "hibernating")))] == 0
    assert got[("fedxmpp_sessions", (("kind", "s2s_out"), ("state", "open")))] == 0
    assert got[("fedxmpp_stanzas_routed_total", (("kind", "message"),))] >= 2
    assert got[("fedxmpp_stanzas_routed_total", (("kind", "presence"),))] >= 1
    assert got[("fedxmpp_logins_total", (("mechanism", "SCRAM-SHA-256"), ("outcome", "ok")))] == 2
    assert got[("fedxmpp_logins_total", (("mechanism", "PLAIN"), ("outcome", "failed")))] == 1
    assert got[("fedxmpp_s2s_link_failures_total", (("condition", "remote-server-not-found"),))] == 1
    assert got[("fedxmpp_s2s_queued_stanzas", ())] == 0
    # The write queues of the archive and offline storage report their length.
    assert got[("fedxmpp_storage_write_backlog", (("store", "archive"),))] == 0
    assert got[("fedxmpp_storage_write_backlog", (("store", "offline"),))] == 0


def test_s2s_queue_depth_counts_stanzas_waiting_for_a_link(tmp_path):
    """Stanzas to a remote domain wait in its queue while the link is set up."""
    srv = server(tmp_path)

    class PendingResolver:
        async def targets(self, domain: str) -> Any:
            return await Deferred()

    srv.s2s.outgoing.resolver = PendingResolver()
    for n in range(3):
        srv.router.route(domish.Element((None, "message")), JID.parse("ann@example.test/a"),
                         JID.parse(f"r{n}@remote.test"))
    assert samples(srv)[("fedxmpp_s2s_queued_stanzas", ())] == 3


def test_reactor_lag_is_how_late_the_timer_fired(tmp_path):
    """A timer due every second that fires 0.25 s late reports 0.25 s of lag."""
    srv = server(tmp_path)
    srv.reactor_lag.start()
    clock = srv.reactor
    clock.advance(1.25)
    got = samples(srv)
    assert got[("fedxmpp_reactor_lag_last_seconds", ())] == pytest.approx(0.25)
    clock.advance(1.0)
    got = samples(srv)
    assert got[("fedxmpp_reactor_lag_last_seconds", ())] == pytest.approx(0.0)
    assert got[("fedxmpp_reactor_lag_seconds_sum", ())] == pytest.approx(0.25)
    assert got[("fedxmpp_reactor_lag_seconds_count", ())] == 2
    assert [c for c in clock.getDelayedCalls() if "ReactorLag" in repr(c)]
    srv.reactor_lag.stop()
    assert not [c for c in clock.getDelayedCalls() if "ReactorLag" in repr(c)]


def test_only_allowed_addresses_may_read_the_metrics(tmp_path):
    """Loopback is allowed by default, anyone else gets 403; ``allow`` widens it."""
    srv = server(tmp_path)
    assert scrape(srv, IPv6Address("TCP", "::1", 40000)).responseCode in (None, 200)
    refused = scrape(srv, IPv4Address("TCP", "192.0.2.7", 40000))
    assert refused.responseCode == 403 and b"fedxmpp_sessions" not in b"".join(refused.written)
    wider = server(tmp_path, '[metrics]\nallow = ["192.0.2.0/24"]\n')
    assert scrape(wider, IPv4Address("TCP", "192.0.2.7", 40000)).responseCode in (None, 200)
    assert scrape(wider, IPv4Address("TCP", "127.0.0.1", 40000)).responseCode == 403


def test_reload_changes_who_may_read_the_metrics(tmp_path):
    """``[metrics] allow`` is taken by a reload, for the next scrape."""
    srv = server(tmp_path)
    outsider = IPv4Address("TCP", "192.0.2.7", 40000)
    assert scrape(srv, outsider).responseCode == 403
    path = tmp_path / "fedxmpp.toml"
    path.write_text(path.read_text() + '[metrics]\nallow = ["192.0.2.0/24"]\n')
    result = reload.reload(srv)
    assert "metrics.allow" in result.applied and not result.refused
    assert scrape(srv, outsider).responseCode in (None, 200)


def test_metrics_are_on_the_http_listener_tree(tmp_path):
    """/metrics is a child of the HTTP listener's root."""
    srv = server(tmp_path)
    assert srv.http.root.getStaticEntity(b"metrics") is srv.metrics


@pytest.mark.parametrize("section, problem", [
    ('[metrics]\nallow = ["localhost"]\n', "metrics.allow: 'localhost' is not an IP address or network"),
    ('[metrics]\nlisten = ["tcp:nope"]\n', "metrics.listen: 'tcp:nope'"),
])
def test_bad_metrics_settings_are_one_line(tmp_path, section, problem):
    path = tmp_path / "fedxmpp.toml"
    path.write_text('[server]\ndomains = ["example.test"]\n' + section)
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert problem in str(e.value) and "\n" not in str(e.value)


def test_the_example_dashboard_asks_only_for_metrics_the_server_has(tmp_path):
    """Every metric etc/grafana-dashboard.json queries is in the exposition."""
    dashboard = json.loads((Path(__file__).resolve().parents[3] / "etc" / "grafana-dashboard.json").read_text())
    wanted = {name for panel in dashboard["panels"] for target in panel["targets"]
              for name in re.findall(r"fedxmpp_\w+", target["expr"])}
    srv = server(tmp_path)
    srv.s2s.outgoing.count_failure("remote-server-timeout")
    srv.c2s.logins[("PLAIN", "ok")] = 1
    srv.router.routed_kinds["message"] = 1
    have = {name for name, _ in samples(srv)}
    assert len(wanted) >= 8 and wanted <= have, wanted - have
