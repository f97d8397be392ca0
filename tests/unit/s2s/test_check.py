"""`fedxmpp check`: its argument checks and its report when DNS says no."""

from __future__ import annotations

from twisted.internet import defer
from twisted.names import dns

from fedxmpp import cli
from fedxmpp.s2s.check import run_check
from fedxmpp.tls import PeerVerifier
from tests.unit.s2s.world import FakeDNS, real_resolver


def test_bad_nameserver_is_a_usage_error(capsys):
    """--nameserver must be an IP address (with an optional port): anything else is
    refused with one line before any lookup."""
    assert cli.main(["check", "example.org", "--nameserver", "dns.example.org"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("fedxmpp: --nameserver 'dns.example.org' names 'dns.example.org', which is not an IP")


def test_report_for_a_domain_that_offers_no_service():
    """A "." SRV target: the report lists both services and says FAIL with the
    reason; the check fails."""
    fake = FakeDNS({"_xmpp-server._tcp.example.org": [dns.Record_SRV(0, 0, 0, b"")]})
    lines: list[str] = []
    d = defer.Deferred.fromCoroutine(run_check(None, real_resolver(fake), PeerVerifier(None), "example.org",
                                               lines.append))
    result = []
    d.addCallback(result.append)
    assert result == [False]
    assert "  SRV _xmpps-server._tcp.example.org: none" in lines
    assert any(line.startswith("FAIL: example.org says it offers no server-to-server service") for line in lines)
