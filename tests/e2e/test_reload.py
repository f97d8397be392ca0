"""Reloading the running server: SIGHUP and `fedxmpp reload` re-read the
certificates and the configuration without dropping a session."""

from __future__ import annotations

import shutil
import signal

from fedxmpp.tls import generate_self_signed
from tests.e2e.harness import (
    DOMAIN, OTHER, RawClient, expect_stream_error, file_fingerprint, lines_matching, presented_fingerprint,
    stream_error, wait_for,
)

USERS = {"rae@example.test": "rae-password", "sol@example.test": "sol-password"}


def test_sighup_serves_renewed_certificates_and_keeps_sessions(own_server):
    """A certificate replaced on disk (as certbot renews it) and a new certbot-layout
    directory for the second domain are what new connections get after SIGHUP, on
    direct TLS (SNI) and STARTTLS; a session opened before keeps working over its
    old TLS connection, and the server keeps running."""
    srv = own_server(users=USERS)
    old_ca = srv.root / "old-example.crt"
    shutil.copy(srv.cert_path(DOMAIN), old_ca)
    before = file_fingerprint(old_ca)
    with RawClient(srv.port, old_ca) as rae:
        rae.login("rae", USERS["rae@example.test"], "before")
        assert rae.ping_server().get("type") == "result"

        srv.cli("cert", "generate", DOMAIN)  # replaces example.test.crt/.key in place
        renewed = file_fingerprint(srv.cert_path(DOMAIN))
        certbot = srv.data_dir / "certs" / OTHER
        cert, key = generate_self_signed(OTHER, srv.root / "staging")
        certbot.mkdir()
        cert.rename(certbot / "fullchain.pem")
        key.rename(certbot / "privkey.pem")
        assert renewed != before
        # Not yet: the running server still serves what it loaded.
        assert presented_fingerprint(srv.tls_port, old_ca) == before

        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"Reloaded .*: certificates")
        assert srv.running

        assert presented_fingerprint(srv.tls_port, srv.cert_path(DOMAIN)) == renewed
        assert presented_fingerprint(srv.tls_port, certbot / "fullchain.pem", OTHER) == file_fingerprint(
            certbot / "fullchain.pem")
        with RawClient(srv.port, srv.cert_path(DOMAIN)) as sol:  # STARTTLS with the new certificate
            sol.login("sol", USERS["sol@example.test"], "after")
            assert sol.ping_server().get("type") == "result"
        assert rae.ping_server("after-reload").get("type") == "result"
    srv.proc.send_signal(signal.SIGHUP)  # a second one works too
    wait_for(lambda: len(lines_matching(srv.log_text(), r"Reloaded .*: certificates")) == 2, 10,
             what="a second reload")
    assert srv.running and "Traceback" not in srv.log_text()


def test_reload_command_applies_what_it_can_and_names_what_needs_a_restart(own_server):
    """`fedxmpp reload` applies a changed c2s.auth_timeout to new connections; a
    changed listener or domain list is refused with one line naming the key (the
    rest still applies) and kept; a broken file (on SIGHUP) changes nothing.  The session open
    throughout stays up."""
    srv = own_server(users=USERS)
    with RawClient(srv.port, srv.cert_path()) as rae:
        rae.login("rae", USERS["rae@example.test"], "throughout")

        srv.overrides = {"c2s": {"auth_timeout": 2}}
        srv.write_config()
        done = srv.cli("reload")
        assert done.stdout == "reloaded the certificates; applied c2s.auth_timeout\n", done
        with RawClient(srv.port, srv.cert_path()) as silent:
            assert stream_error(expect_stream_error(silent, timeout=20)) == "connection-timeout"

        sections = srv.sections
        sections["c2s"]["listen"] = [sections["c2s"]["listen"][0], "tcp:0:interface=127.0.0.1"]
        sections["server"]["domains"] = [DOMAIN]
        sections["c2s"]["idle_timeout"] = 900
        srv.overrides = sections
        srv.write_config()
        done = srv.cli("reload", check=False)
        assert done.returncode == 1 and done.stdout == "", done
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("fedxmpp: reloaded the certificates; applied c2s.idle_timeout; not applied, "
                                      "changing them needs a restart: "), done.stderr
        assert "server.domains" in done.stderr and "c2s.listen" in done.stderr, done.stderr
        logged = srv.wait_log(r"not applied, changing them needs a restart")
        assert "server.domains" in logged and "c2s.listen" in logged, logged
        # other.test is still served: its domain was not removed.
        with RawClient(srv.port, srv.cert_path(OTHER), domain=OTHER) as other:
            other.open()
            other.starttls()

        srv.config_path.write_text("[server\n")
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"Reload failed, nothing changed: .*fedxmpp\.toml: not valid TOML")
        assert srv.running
        assert rae.ping_server().get("type") == "result"
