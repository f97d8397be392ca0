"""The real server on PostgreSQL (a server of the test session's own, tests/pgserver.py):
logins, rosters, offline messages and the archive survive a restart; start-up
errors are one line naming storage.url without the password; and
``fedxmpp migrate-storage`` moves a server's data from SQLite to PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.e2e.harness import IO_TIMEOUT, ServerProcess, free_port, lines_matching, logged_in, run, run_twistd, toml_text
from tests.e2e.im import Presences, befriend, manual_subscriptions, server_roster
from tests.pgserver import PASSWORD, PostgresServer

pytestmark = pytest.mark.interop

ROMEO, JULIET = "romeo@example.test", "juliet@example.test"
USERS = {ROMEO: "romeo-secret", JULIET: "juliet-secret"}
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"


def _archive_bodies(answer_results: list[ET.Element]) -> list[str | None]:
    return [r.findtext(f"{{{FORWARD}}}forwarded/{{{CLIENT}}}message/{{{CLIENT}}}body") for r in answer_results]


async def _archive_with(client, jid: str) -> list[str | None]:
    """The bodies of the client's archived messages with *jid*, oldest first."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    got: list[ET.Element] = []
    client.xmpp.register_handler(Callback("pg archive", MatchXPath(f"{{{CLIENT}}}message/{{{MAM}}}result"),
                                          lambda m: got.append(m.xml.find(f"{{{MAM}}}result"))))
    iq = client.xmpp.make_iq_set()
    iq.xml.append(ET.fromstring(
        f"<query xmlns='{MAM}' queryid='pg'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        f"<field var='with'><value>{jid}</value></field></x></query>"))
    answer = await iq.send(timeout=IO_TIMEOUT)
    assert answer.xml.find(f"{{{MAM}}}fin") is not None
    return _archive_bodies(got)


async def _offline_messages_for_juliet(server: ServerProcess) -> None:
    """Romeo and juliet become friends; juliet leaves; romeo writes her three messages."""
    async with logged_in(server, f"{ROMEO}/r", USERS[ROMEO]) as romeo, \
            logged_in(server, f"{JULIET}/j", USERS[JULIET]) as juliet:
        manual_subscriptions(romeo, juliet)
        pr, pj = Presences(romeo), Presences(juliet)
        await romeo.available()
        await juliet.available()
        await befriend(romeo, pr, juliet, pj)
        await juliet.close()
        await pr.expect(f"{JULIET}/j", "unavailable")
        for n in range(3):
            romeo.xmpp.send_message(mto=JULIET, mbody=f"wherefore {n}", mtype="chat")
        await romeo.barrier()


async def _juliet_finds_everything(server: ServerProcess) -> None:
    async with logged_in(server, f"{JULIET}/j2", USERS[JULIET]) as juliet:
        assert (await server_roster(juliet))[ROMEO] == ("both", None)
        juliet.xmpp.send_presence()
        bodies = [(await juliet.next_message())["body"] for _ in range(3)]
        assert bodies == [f"wherefore {n}" for n in range(3)]
        assert await _archive_with(juliet, ROMEO) == [f"wherefore {n}" for n in range(3)]


def _no_problems(server: ServerProcess) -> None:
    text = server.log_text()
    assert not lines_matching(text, r"Traceback|Unhandled (error|Error)"), server.log_tail(80)
    assert PASSWORD not in text


def test_server_on_postgresql_keeps_everything_across_a_restart(own_server, postgres_server: PostgresServer,
                                                                postgres_url: str):
    """twistd on PostgreSQL: accounts imported by the admin command log in; a roster,
    offline messages and the archive written before a restart are all there after it,
    in PostgreSQL (no SQLite file appears), and no log line holds the password."""
    server = own_server(overrides={"storage": {"url": postgres_url, "pool_size": 4}}, users=USERS)
    server.wait_log(r"Storage: postgresql://fedxmpp:\*\*\*@127\.0\.0\.1:\d+/test_")
    run(_offline_messages_for_juliet(server))
    assert server.exited_cleanly(server.terminate())
    _no_problems(server)
    server.start()
    run(_juliet_finds_everything(server))
    _no_problems(server)
    assert not list(server.data_dir.glob("*.sqlite3"))
    database = postgres_url.rsplit("/", 1)[1]
    assert postgres_server.psql("SELECT COUNT(*) FROM accounts", database).strip() == "2"


@pytest.mark.parametrize("problem", ["unreachable", "wrong-password", "bad-url"])
def test_storage_start_up_errors_are_one_line_without_the_password(tmp_path, postgres_server: PostgresServer,
                                                                   problem: str):
    """twistd refuses to start: exit status non-zero, one line naming the file and
    storage.url with the reason, no traceback, and the password nowhere."""
    secret = "Start-Up-Secret-42"
    url = {
        "unreachable": f"postgresql://fedxmpp:{secret}@127.0.0.1:{free_port()}/postgres",
        "wrong-password": postgres_server.url("postgres", password=secret),
        "bad-url": f"postgresql://fedxmpp:{secret}@127.0.0.1:notaport/postgres",
    }[problem]
    reason = {"unreachable": "Connection refused", "wrong-password": "password authentication failed",
              "bad-url": "not a PostgreSQL URL"}[problem]
    path = tmp_path / "pg.toml"
    path.write_text(toml_text({"server": {"data_dir": str(tmp_path / "data")},
                               "c2s": {"listen": [f"tcp:{free_port()}:interface=127.0.0.1"], "direct_tls": []},
                               "s2s": {"listen": [], "direct_tls": []},
                               "storage": {"url": url}}))
    done = run_twistd(path, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output and secret not in output, output
    naming = [line for line in output.splitlines() if str(path) in line]
    assert len(naming) == 1, output
    assert "storage.url" in naming[0] and reason in naming[0], output


def test_migrate_storage_moves_a_server_from_sqlite_to_postgresql(own_server, postgres_url: str):
    """A server on SQLite with a roster, offline messages and an archive; migrate-storage
    refuses while it runs, then (stopped) copies and prints its counts, refuses a second
    time (the target is no longer empty), and the server restarted on PostgreSQL has it all."""
    server = own_server(users=USERS)
    run(_offline_messages_for_juliet(server))
    refused = server.cli("migrate-storage", "--to", postgres_url, check=False)
    assert refused.returncode == 1 and "server is running" in refused.stderr, refused.stderr
    assert server.exited_cleanly(server.terminate())

    done = server.cli("migrate-storage", "--to", postgres_url)
    assert "accounts: 2 rows" in done.stdout and "offline_messages: 3 rows" in done.stdout, done.stdout
    assert "roster_items: 2 rows" in done.stdout, done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    again = server.cli("migrate-storage", "--to", postgres_url, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr and "accounts (2 rows)" in again.stderr, again.stderr
    assert PASSWORD not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    server.overrides = {"storage": {"url": postgres_url}}
    server.write_config()
    server.start()
    run(_juliet_finds_everything(server))
    _no_problems(server)
