"""Prometheus metrics from the running server: `/metrics` on the HTTP listener
and on a metrics listener of its own, parsed with prometheus_client's parser."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import RawClient, free_port, sasl_condition

USERS = {"ann@example.test": "ann-password", "ben@example.test": "ben-password"}


def _scrape(port: int, host: str = "127.0.0.1") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=20) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_sessions_logins_and_stanzas(own_server):
    """A bound client, a failed and two good logins and routed stanzas are reported
    on both listeners; the metrics listener serves nothing but /metrics."""
    http_port, metrics_port = free_port(), free_port()
    srv = own_server({"http": {"listen": [f"tcp:{http_port}:interface=127.0.0.1"]},
                      "metrics": {"listen": [f"tcp:{metrics_port}:interface=127.0.0.1"]}}, users=USERS)
    srv.wait_log(r"Serving metrics on")
    before = _scrape(metrics_port)
    assert before[("fedxmpp_sessions", (("kind", "c2s"), ("state", "bound")))] == 0
    assert ("fedxmpp_logins_total", (("mechanism", "PLAIN"), ("outcome", "ok"))) not in before

    with RawClient(srv.port, srv.cert_path()) as bad:
        bad.open()
        bad.starttls()
        assert sasl_condition(bad.auth_plain("ann", "not-the-password")) == "not-authorized"
    ann = RawClient(srv.port, srv.cert_path())
    ben = RawClient(srv.port, srv.cert_path())
    with ann, ben:
        ann.login("ann", USERS["ann@example.test"], "desk")
        ben.login("ben", USERS["ben@example.test"], "desk")
        for _ in range(3):
            ann.ping_server()
        for port in (metrics_port, http_port):
            got = _scrape(port)
            assert got[("fedxmpp_sessions", (("kind", "c2s"), ("state", "bound")))] == 2
            assert got[("fedxmpp_logins_total", (("mechanism", "PLAIN"), ("outcome", "ok")))] == 2
            assert got[("fedxmpp_logins_total", (("mechanism", "PLAIN"), ("outcome", "failed")))] == 1
            assert got[("fedxmpp_stanzas_routed_total", (("kind", "iq"),))] >= 3
            assert got[("fedxmpp_s2s_queued_stanzas", ())] == 0
            assert ("fedxmpp_storage_write_backlog", (("store", "archive"),)) in got
            assert got[("fedxmpp_uptime_seconds", ())] > 0
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/upload/", timeout=20)
        raise AssertionError("the metrics listener served more than /metrics")
    except urllib.error.HTTPError as e:
        assert e.code == 404
