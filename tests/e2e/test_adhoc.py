"""XEP-0050 ad-hoc commands with the XEP-0133 service administration set, run by
an admin over a real client connection; refused to everyone else."""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from typing import Any

from tests.e2e.harness import CLIENT, RawClient, StreamClosed, check_login, logged_in, run, stanza_error

USERS = {"boss@example.test": "boss-password", "ann@example.test": "ann-password",
         "ben@example.test": "ben-password"}
COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
DATA = "jabber:x:data"
ITEMS = "http://jabber.org/protocol/disco#items"
_ids = itertools.count()


def _iq(client: RawClient, payload: str, kind: str = "set") -> ET.Element:
    ident = f"q{next(_ids)}"
    client.send(f"<iq type='{kind}' id='{ident}' to='example.test'>{payload}</iq>")
    while True:
        el = client.next_element()
        if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == ident:
            return el


def _field(name: str, *values: str) -> str:
    return f"<field var='{name}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


def _run(client: RawClient, node: str, **fields: str | list[str]) -> ET.Element:
    """Execute *node*, fill in its form with *fields* and submit it: the final answer."""
    first = _iq(client, f"<command xmlns='{COMMANDS}' node='{ADMIN}#{node}' action='execute'/>")
    command = first.find(f"{{{COMMANDS}}}command")
    if command is None or command.get("status") != "executing":
        return first
    form = command.find(f"{{{DATA}}}x")
    assert form is not None and form.get("type") == "form"
    offered = {f.get("var") for f in form.findall(f"{{{DATA}}}field")}
    assert set(fields) <= offered, (fields, offered)
    body = "".join(_field(k, *(v if isinstance(v, list) else [v])) for k, v in fields.items())
    return _iq(client, f"<command xmlns='{COMMANDS}' node='{ADMIN}#{node}' sessionid='{command.get('sessionid')}'"
                       f" action='complete'><x xmlns='{DATA}' type='submit'>"
                       f"{_field('FORM_TYPE', ADMIN)}{body}</x></command>")


def _completed(answer: ET.Element) -> ET.Element:
    assert answer.get("type") == "result", ET.tostring(answer)
    command = answer.find(f"{{{COMMANDS}}}command")
    assert command is not None and command.get("status") == "completed", ET.tostring(answer)
    return command


def _result(command: ET.Element, var: str) -> list[str]:
    for f in command.iter(f"{{{DATA}}}field"):
        if f.get("var") == var:
            return [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
    raise AssertionError(f"no field {var}: {ET.tostring(command)}")


def _command_items(client: RawClient) -> list[str]:
    answer = _iq(client, f"<query xmlns='{ITEMS}' node='{COMMANDS}'/>", kind="get")
    assert answer.get("type") == "result", ET.tostring(answer)
    return [i.get("node") or "" for i in answer.iter(f"{{{ITEMS}}}item")]


def test_admin_manages_accounts_and_sessions(own_server):
    """The admin lists the commands, adds a user (who can log in), changes a
    password, counts and lists online users, announces, ends a session and
    deletes a user; each command answers 'completed'."""
    srv = own_server({"server": {"admins": ["boss@example.test"]}}, users=USERS)
    boss = RawClient(srv.port, srv.cert_path())
    ann = RawClient(srv.port, srv.cert_path())
    with boss, ann:
        boss.login("boss", USERS["boss@example.test"], "console")
        ann.login("ann", USERS["ann@example.test"], "phone")
        nodes = _command_items(boss)
        for node in ("add-user", "delete-user", "change-user-password", "get-online-users-list",
                     "end-user-session", "announce", "get-online-users-num", "get-registered-users-num"):
            assert f"{ADMIN}#{node}" in nodes, nodes

        _completed(_run(boss, "add-user", accountjid="cy@example.test", password="cy-password",
                        **{"password-verify": "cy-password"}))
        check_login(srv, "cy@example.test", "cy-password")
        conflict = _run(boss, "add-user", accountjid="cy@example.test", password="cy-password",
                        **{"password-verify": "cy-password"})
        assert stanza_error(conflict) == "conflict"
        short = _run(boss, "add-user", accountjid="dan@example.test", password="short",
                     **{"password-verify": "short"})
        assert stanza_error(short) == "not-acceptable"

        _completed(_run(boss, "change-user-password", accountjid="ben@example.test", password="ben-new-password"))
        check_login(srv, "ben@example.test", "ben-new-password")

        count = _completed(_iq(boss, f"<command xmlns='{COMMANDS}' node='{ADMIN}#get-online-users-num'"
                                     f" action='execute'/>"))
        assert _result(count, "onlineusersnum") == ["2"]
        registered = _completed(_iq(boss, f"<command xmlns='{COMMANDS}' node='{ADMIN}#get-registered-users-num'"
                                          f" action='execute'/>"))
        assert _result(registered, "registeredusersnum") == ["4"]
        listed = _completed(_run(boss, "get-online-users-list", max_items="100"))
        assert sorted(_result(listed, "onlineuserjids")) == ["ann@example.test", "boss@example.test"]

        _completed(_run(boss, "announce", subject="Maintenance", announcement=["Down at noon", "for 5 minutes"]))
        while True:
            el = ann.next_element()
            if el.tag == f"{{{CLIENT}}}message":
                break
        assert el.get("from") == "example.test" and el.get("type") == "headline"
        assert el.findtext(f"{{{CLIENT}}}body") == "Down at noon\nfor 5 minutes"
        assert el.findtext(f"{{{CLIENT}}}subject") == "Maintenance"

        _completed(_run(boss, "end-user-session", accountjids=["ann@example.test"]))
        try:
            while True:
                ann.next_element()
        except StreamClosed:
            pass
        assert ann.received.closing_tag or ann.received.eof

        _completed(_run(boss, "delete-user", accountjids=["cy@example.test"]))
        missing = _run(boss, "delete-user", accountjids=["cy@example.test"])
        assert stanza_error(missing) == "item-not-found"
        registered = _completed(_iq(boss, f"<command xmlns='{COMMANDS}' node='{ADMIN}#get-registered-users-num'"
                                          f" action='execute'/>"))
        assert _result(registered, "registeredusersnum") == ["3"]


def test_sessions_belong_to_their_requester_and_can_be_canceled(own_server):
    """A session id is good only for the full JID that started it; a canceled
    session is gone."""
    srv = own_server({"server": {"admins": ["boss@example.test"]}}, users=USERS)
    desk, phone = RawClient(srv.port, srv.cert_path()), RawClient(srv.port, srv.cert_path())
    with desk, phone:
        desk.login("boss", USERS["boss@example.test"], "desk")
        phone.login("boss", USERS["boss@example.test"], "phone")
        first = _iq(desk, f"<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' action='execute'/>")
        session = first.find(f"{{{COMMANDS}}}command").get("sessionid")
        submit = (f"<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' sessionid='{session}' action='complete'>"
                  f"<x xmlns='{DATA}' type='submit'>{_field('accountjid', 'eve@example.test')}"
                  f"{_field('password', 'eve-password')}</x></command>")
        assert stanza_error(_iq(phone, submit)) == "bad-request"
        canceled = _iq(desk, f"<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' sessionid='{session}'"
                             f" action='cancel'/>")
        assert canceled.find(f"{{{COMMANDS}}}command").get("status") == "canceled"
        assert stanza_error(_iq(desk, submit)) == "bad-request"


def test_non_admins_see_no_commands_and_are_forbidden(own_server):
    """A user not in [server] admins gets an empty command list and <forbidden/>."""
    srv = own_server({"server": {"admins": ["boss@example.test"]}}, users=USERS)
    with RawClient(srv.port, srv.cert_path()) as ann:
        ann.login("ann", USERS["ann@example.test"], "phone")
        assert _command_items(ann) == []
        answer = _run(ann, "add-user", accountjid="mal@example.test", password="mal-password")
        assert stanza_error(answer) == "forbidden"
        answer = _iq(ann, f"<command xmlns='{COMMANDS}' node='{ADMIN}#get-online-users-num' action='execute'/>")
        assert stanza_error(answer) == "forbidden"


def test_slixmpp_admin_adds_a_user_with_its_xep_0133_plugin(own_server):
    """slixmpp's xep_0050/xep_0133 plugins, as a client library uses them: the
    command list, then add-user through the plugin's session workflow."""
    srv = own_server({"server": {"admins": ["boss@example.test"]}}, users=USERS)

    async def scenario() -> None:
        async with logged_in(srv, "boss@example.test", USERS["boss@example.test"],
                             plugins={"xep_0133": {}}) as boss:
            xmpp = boss.xmpp
            items = await xmpp.plugin["xep_0133"].get_commands("example.test")
            nodes = {item[1] for item in items["disco_items"]["items"]}
            assert f"{ADMIN}#add-user" in nodes, nodes
            loop = asyncio.get_running_loop()
            done: asyncio.Future = loop.create_future()

            def fill(iq: Any, session: dict) -> None:
                form = iq["command"]["form"]
                form["type"] = "submit"
                form.set_values({"FORM_TYPE": ADMIN, "accountjid": "fay@example.test",
                                 "password": "fay-password", "password-verify": "fay-password"})
                session["payload"] = form
                session["next"] = lambda result, _s: done.set_result(result["command"]["status"])
                xmpp.plugin["xep_0050"].complete_command(session)

            xmpp.plugin["xep_0133"].add_user(
                jid="example.test",
                session={"next": fill, "error": lambda iq, _s: done.set_exception(AssertionError(str(iq)))})
            assert await asyncio.wait_for(done, 20) == "completed"

    run(scenario())
    check_login(srv, "fay@example.test", "fay-password")
