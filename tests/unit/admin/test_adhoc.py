"""Ad-hoc command sessions (bounded, expiring) and the ``[server] admins`` setting,
on a server built through app.build with a fake reactor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.words.xish import domish

from fedxmpp import app, config
from fedxmpp.admin import adhoc, reload
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.xml.jid import JID

BASE = '[server]\ndomains = ["example.test"]\ndata_dir = "data"\nadmins = ["boss@example.test"]\n'


class Answers:
    """A router that keeps what the commands answer."""

    def __init__(self) -> None:
        self.results: list[domish.Element] = []
        self.errors: list[str] = []

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        self.results.append(stanza)

    def bounce(self, stanza: domish.Element, frm: JID, to: JID, error: Any) -> None:
        self.errors.append(error.condition)


def server(tmp_path: Path, text: str = BASE) -> app.FedXmpp:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return app.build(config.load(path), MemoryReactorClock())


def execute(srv: app.FedXmpp, frm: str, node: str, answers: Answers, **attrs: str) -> None:
    iq = domish.Element((None, "iq"))
    iq["type"] = "set"
    command = iq.addElement((adhoc.COMMANDS, "command"))
    command["node"] = f"{adhoc.ADMIN}#{node}"
    for key, value in attrs.items():
        command[key] = value
    event = StanzaEvent(iq, JID.parse(frm), JID.parse("example.test"), answers)  # type: ignore[arg-type]
    assert srv.adhoc._execute(event)


def session_id(answers: Answers) -> str:
    command = next(answers.results[-1].elements())
    assert command["status"] == "executing"
    return str(command["sessionid"])


def test_sessions_are_bounded_per_requester(tmp_path):
    """An admin can have only so many forms open; finishing one frees its place."""
    srv = server(tmp_path)
    answers = Answers()
    for _ in range(adhoc.MAX_SESSIONS_PER_REQUESTER):
        execute(srv, "boss@example.test/a", "add-user", answers)
    assert not answers.errors and len(srv.adhoc.sessions) == adhoc.MAX_SESSIONS_PER_REQUESTER
    execute(srv, "boss@example.test/a", "add-user", answers)
    assert answers.errors == ["resource-constraint"]
    # Another admin resource is a requester of its own.
    execute(srv, "boss@example.test/b", "add-user", answers)
    assert answers.errors == ["resource-constraint"]
    execute(srv, "boss@example.test/a", "add-user", answers, sessionid=next(iter(srv.adhoc.sessions)),
            action="cancel")
    assert next(answers.results[-1].elements())["status"] == "canceled"
    execute(srv, "boss@example.test/a", "add-user", answers)
    assert answers.errors == ["resource-constraint"]
    assert len(srv.adhoc.sessions) == adhoc.MAX_SESSIONS_PER_REQUESTER + 1


def test_sessions_expire(tmp_path):
    """A form not submitted within SESSION_LIFETIME is forgotten: its id is refused."""
    srv = server(tmp_path)
    answers = Answers()
    execute(srv, "boss@example.test/a", "add-user", answers)
    sid = session_id(answers)
    srv.reactor.advance(adhoc.SESSION_LIFETIME + 1)
    execute(srv, "boss@example.test/a", "add-user", answers, sessionid=sid, action="complete")
    assert answers.errors == ["bad-request"] and not srv.adhoc.sessions


def test_admins_list_is_reloaded(tmp_path):
    """``[server] admins`` takes effect on reload: a new admin may run commands."""
    srv = server(tmp_path)
    answers = Answers()
    execute(srv, "ann@example.test/a", "add-user", answers)
    assert answers.errors == ["forbidden"]
    (tmp_path / "fedxmpp.toml").write_text(BASE.replace('"boss@example.test"',
                                                        '"boss@example.test", "ann@example.test"'))
    result = reload.reload(srv)
    assert "server.admins" in result.applied and not result.refused
    execute(srv, "ann@example.test/a", "add-user", answers)
    assert answers.errors == ["forbidden"] and session_id(answers)


@pytest.mark.parametrize("admins, problem", [
    ('["boss@elsewhere.test"]', "'boss@elsewhere.test' is not at a hosted domain"),
    ('["boss@example.test/desk"]', "must be a bare JID"),
    ('["example.test"]', "must be a bare JID"),
])
def test_bad_admins_are_one_line(tmp_path, admins, problem):
    path = tmp_path / "fedxmpp.toml"
    path.write_text(f'[server]\ndomains = ["example.test"]\nadmins = {admins}\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert "server.admins" in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)
