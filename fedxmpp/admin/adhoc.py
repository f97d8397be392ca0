"""XEP-0050 ad-hoc commands at the server's domains, with the XEP-0133 service
administration set for the users named in ``[server] admins``.

Every command takes one form: the first ``execute`` answers it (status
``executing``, a session id, the single action ``complete``); submitting it
carries the command out (status ``completed``).  The statistics commands need
no input and complete at once.  Sessions waiting for their form are bounded in
number (per requester and in all) and expire after :data:`SESSION_LIFETIME`
seconds; a session belongs to the full JID that started it.

Anyone else sees no command (the command node's disco#items is empty for them)
and is answered ``<forbidden/>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.admin.status import kick
from fedxmpp.features import forms
from fedxmpp.features._shared import spawn
from fedxmpp.im.accounts import remove_account
from fedxmpp.im.delivery import StanzaEvent
from fedxmpp.storage.credentials import InvalidPassword, check_password_length
from fedxmpp.storage.errors import AccountExists, NoSuchAccount
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError
from fedxmpp.xml.jid import JID, InvalidJID

if TYPE_CHECKING:
    from fedxmpp.app import FedXmpp

log = Logger()

COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
# Seconds a command session waits for its form.
SESSION_LIFETIME = 600.0
# Command sessions waiting at once, per requester and in all.
MAX_SESSIONS_PER_REQUESTER = 5
MAX_SESSIONS = 100
# Addresses one request may name (delete, end sessions).
MAX_JIDS = 100
# Online users listed by default and at most.
DEFAULT_LIST = 100
MAX_LIST = 10_000


class CommandError(Exception):
    """The command cannot be carried out as submitted: answered with this stanza error."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.error = StanzaError(condition, text)


@dataclass(frozen=True)
class Outcome:
    """What a completed command answers: a note, and a result form or not."""

    note: str | None = None
    result: list[forms.Field] | None = None


Run = Callable[["AdHocCommands", JID, forms.Form], Awaitable[Outcome]]


@dataclass(frozen=True)
class Command:
    node: str
    name: str
    #: The fields of the form the requester fills in; None: completes at once.
    fields: Callable[[], list[forms.Field]] | None
    run: Run


@dataclass
class Session:
    requester: JID
    node: str
    expires: float


class AdHocCommands:
    """The commands, their sessions, and the hooks that expose them."""

    def __init__(self, app: FedXmpp) -> None:
        self.app = app
        self.sessions: dict[str, Session] = {}
        self.commands = {c.node: c for c in _COMMANDS}
        hooks = app.hooks
        app.features.disco.server_features.add(COMMANDS)
        hooks.add(f"iq-set/host/{COMMANDS}", self._execute)
        # Before the disco module, which knows no nodes of ours.
        hooks.add(f"iq-get/host/{ns.DISCO_ITEMS}", self._items, priority=10)
        hooks.add(f"iq-get/host/{ns.DISCO_INFO}", self._info, priority=10)

    def is_admin(self, jid: JID) -> bool:
        return jid.user is not None and jid.bare.full() in self.app.config.server.admins

    # -- discovery ----------------------------------------------------------------------

    def _items(self, event: StanzaEvent) -> bool:
        if _node(event) != COMMANDS:
            return False
        query = domish.Element((ns.DISCO_ITEMS, "query"))
        query["node"] = COMMANDS
        if self.is_admin(event.frm):
            for command in self.commands.values():
                item = query.addElement("item")
                item["jid"] = event.to.full()
                item["node"] = command.node
                item["name"] = command.name
        event.reply(query)
        return True

    def _info(self, event: StanzaEvent) -> bool:
        node = _node(event)
        if node != COMMANDS and node not in self.commands:
            return False
        if not self.is_admin(event.frm):
            event.error("forbidden")
            return True
        query = domish.Element((ns.DISCO_INFO, "query"))
        query["node"] = node
        identity = query.addElement("identity")
        identity["category"], identity["type"] = "automation", ("command-list" if node == COMMANDS
                                                                else "command-node")
        if node in self.commands:
            identity["name"] = self.commands[node].name
        for feature in (COMMANDS, forms.DATA):
            query.addElement("feature")["var"] = feature
        event.reply(query)
        return True

    # -- execution ----------------------------------------------------------------------

    def _execute(self, event: StanzaEvent) -> bool:
        request = event.payload()
        if request is None or request.name != "command":
            event.error("bad-request")
            return True
        node = request.getAttribute("node", "")
        command = self.commands.get(node)
        if command is None:
            event.error("item-not-found", "No such command")
            return True
        if not self.is_admin(event.frm):
            log.info("Ad-hoc command {node} refused to {jid}: not an admin", node=node, jid=event.frm.full())
            event.error("forbidden", "Only the server's administrators may run this command")
            return True
        self._expire()
        action = request.getAttribute("action", "execute")
        session_id = request.getAttribute("sessionid")
        if session_id is None:
            if action != "execute":
                event.error("bad-request", "A new command starts with 'execute'")
                return True
            if command.fields is None:
                self._complete(event, command, forms.Form("submit"))
                return True
            self._start(event, command)
            return True
        session = self.sessions.get(session_id)
        if session is None or session.requester != event.frm or session.node != node:
            event.error("bad-request", "Unknown or expired session")
            return True
        if action == "cancel":
            del self.sessions[session_id]
            event.reply(_command(node, session_id, "canceled"))
            return True
        if action not in ("execute", "complete"):
            event.error("bad-request", f"The action {action!r} is not offered")
            return True
        element = forms.find(request)
        try:
            form = forms.parse(element) if element is not None else None
        except forms.FormError as e:
            event.error("bad-request", str(e))
            return True
        if form is None or form.type != "submit":
            event.error("bad-request", "Submit the command's form")
            return True
        del self.sessions[session_id]
        self._complete(event, command, form, session_id)
        return True

    def _start(self, event: StanzaEvent, command: Command) -> None:
        mine = sum(1 for s in self.sessions.values() if s.requester == event.frm)
        if mine >= MAX_SESSIONS_PER_REQUESTER or len(self.sessions) >= MAX_SESSIONS:
            event.error("resource-constraint", "Too many commands in progress; complete or cancel one")
            return
        session_id = uuid.uuid4().hex
        self.sessions[session_id] = Session(event.frm, command.node,
                                            self.app.reactor.seconds() + SESSION_LIFETIME)
        reply = _command(command.node, session_id, "executing")
        actions = reply.addElement("actions")
        actions["execute"] = "complete"
        actions.addElement("complete")
        assert command.fields is not None
        form = forms.build("form", ADMIN, command.fields())
        form.addElement("title", content=command.name)
        reply.addChild(form)
        event.reply(reply)

    def _complete(self, event: StanzaEvent, command: Command, form: forms.Form,
                  session_id: str | None = None) -> None:
        session_id = session_id or uuid.uuid4().hex

        async def run() -> None:
            try:
                outcome = await command.run(self, event.frm, form)
            except CommandError as e:
                event.router.bounce(event.stanza, event.frm, event.to, e.error)
                return
            log.info("Ad-hoc command {node} run by {jid}", node=command.node, jid=event.frm.full())
            reply = _command(command.node, session_id, "completed")
            if outcome.result is not None:
                reply.addChild(forms.build("result", ADMIN, outcome.result))
            if outcome.note:
                reply.addElement("note", content=outcome.note)["type"] = "info"
            event.reply(reply)

        spawn(event, run(), f"ad-hoc command {command.node}")

    def _expire(self) -> None:
        now = self.app.reactor.seconds()
        for session_id in [i for i, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[session_id]


def _node(event: StanzaEvent) -> str | None:
    query = event.payload()
    if query is None:
        return None
    return query.getAttribute("node") or None


def _command(node: str, session_id: str, status: str) -> domish.Element:
    el = domish.Element((COMMANDS, "command"))
    el["node"] = node
    el["sessionid"] = session_id
    el["status"] = status
    return el


# -- the XEP-0133 commands ------------------------------------------------------------------


def _local_account(commands: AdHocCommands, text: str | None, full_ok: bool = False) -> JID:
    if not text:
        raise CommandError("bad-request", "No address given")
    try:
        jid = JID.parse(text.strip())
    except InvalidJID as e:
        raise CommandError("jid-malformed", f"{text!r} is not a valid address ({e})") from None
    if jid.user is None or (jid.resource is not None and not full_ok):
        raise CommandError("bad-request", f"{text!r} is not a user's bare address")
    if jid.host not in commands.app.config.server.domains:
        raise CommandError("not-acceptable", f"{jid.host} is not a domain of this server")
    return jid


def _accounts(commands: AdHocCommands, form: forms.Form, var: str, full_ok: bool = False) -> list[JID]:
    texts = [t for t in form.values(var) if t.strip()]
    if not texts:
        raise CommandError("bad-request", "No address given")
    if len(texts) > MAX_JIDS:
        raise CommandError("not-acceptable", f"At most {MAX_JIDS} addresses at once")
    return [_local_account(commands, t, full_ok) for t in texts]


def _new_password(commands: AdHocCommands, form: forms.Form) -> str:
    password = form.value("password") or ""
    verify = form.fields.get("password-verify")
    if verify is not None and verify.value != password:
        raise CommandError("not-acceptable", "The passwords differ")
    try:
        check_password_length(password, commands.app.config.auth.min_password_length)
    except InvalidPassword as e:
        raise CommandError("not-acceptable", str(e).capitalize()) from None
    return password


def _jid_field(var: str, label: str, multi: bool = False) -> forms.Field:
    return forms.Field(var, "jid-multi" if multi else "jid-single", label=label)


async def _add_user(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    jid = _local_account(commands, form.value("accountjid"))
    password = _new_password(commands, form)
    assert jid.user is not None and commands.app.storage is not None
    try:
        await commands.app.storage.accounts.create(jid.user, jid.host, password)
    except AccountExists:
        raise CommandError("conflict", f"{jid.full()} exists already") from None
    except InvalidPassword as e:
        raise CommandError("not-acceptable", str(e)) from None
    log.info("Account {user} created by {admin}", user=jid.full(), admin=requester.bare.full())
    return Outcome(f"Created {jid.full()}")


async def _delete_user(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    jids = _accounts(commands, form, "accountjids")
    missing = []
    for jid in jids:
        try:
            await remove_account(commands.app.features, jid, reason=f"by {requester.bare.full()}")
        except NoSuchAccount:
            missing.append(jid.full())
    if missing and len(missing) == len(jids):
        raise CommandError("item-not-found", f"No such account: {', '.join(missing)}")
    removed = [j.full() for j in jids if j.full() not in missing]
    note = f"Deleted {', '.join(removed)}"
    return Outcome(note + (f"; no such account: {', '.join(missing)}" if missing else ""))


async def _change_password(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    jid = _local_account(commands, form.value("accountjid"))
    password = _new_password(commands, form)
    assert jid.user is not None and commands.app.storage is not None
    try:
        await commands.app.storage.accounts.set_password(jid.user, jid.host, password)
    except NoSuchAccount:
        raise CommandError("item-not-found", f"No such account: {jid.full()}") from None
    except InvalidPassword as e:
        raise CommandError("not-acceptable", str(e)) from None
    log.info("Password of {user} changed by {admin}", user=jid.full(), admin=requester.bare.full())
    return Outcome(f"Changed the password of {jid.full()}")


async def _end_sessions(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    ended = 0
    for jid in _accounts(commands, form, "accountjids", full_ok=True):
        ended += kick(commands.app, jid)
    return Outcome(f"Ended {ended} session(s)")


async def _announce(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    body = "\n".join(form.values("announcement")).strip()
    if not body:
        raise CommandError("bad-request", "The announcement is empty")
    subject = (form.value("subject") or "").strip()
    app = commands.app
    sent = 0
    for session in app.sessions.all():
        to = session.address
        message = domish.Element((ns.CLIENT, "message"))
        message["type"] = "headline"
        message["from"] = to.host
        message["to"] = to.full()
        if subject:
            message.addElement("subject", content=subject)
        message.addElement("body", content=body)
        app.router.route(message, JID(None, to.host, None), to)
        sent += 1
    log.info("Announcement by {admin} sent to {n} session(s)", admin=requester.bare.full(), n=sent)
    return Outcome(f"Sent to {sent} session(s)")


async def _online_list(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    text = form.value("max_items") or str(DEFAULT_LIST)
    try:
        limit = MAX_LIST if text == "none" else int(text)
    except ValueError:
        raise CommandError("bad-request", f"max_items: {text!r} is not a number") from None
    limit = max(1, min(limit, MAX_LIST))
    users = sorted({s.address.bare.full() for s in commands.app.sessions.all()})
    return Outcome(result=[forms.Field("onlineuserjids", "jid-multi", users[:limit], label="The online users")])


async def _online_count(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    users = {s.address.bare.full() for s in commands.app.sessions.all()}
    return Outcome(result=[forms.Field("onlineusersnum", "text-single", [str(len(users))],
                                       label="The number of online users")])


async def _registered_count(commands: AdHocCommands, requester: JID, form: forms.Form) -> Outcome:
    assert commands.app.storage is not None
    accounts = commands.app.storage.accounts
    count = 0
    for domain in commands.app.config.server.domains:
        count += len(await accounts.list_users(domain))
    return Outcome(result=[forms.Field("registeredusersnum", "text-single", [str(count)],
                                       label="The number of registered users")])


def _password_fields() -> list[forms.Field]:
    return [_jid_field("accountjid", "The account's address"),
            forms.Field("password", "text-private", label="The password"),
            forms.Field("password-verify", "text-private", label="The password again")]


def _max_items() -> list[forms.Field]:
    options: list[tuple[str, str | None]] = [(n, None) for n in ("25", "50", "75", "100", "150", "200", "none")]
    return [forms.Field("max_items", "list-single", ["100"], label="How many users to list", options=options)]


_COMMANDS: tuple[Command, ...] = (
    Command(f"{ADMIN}#add-user", "Add a user", _password_fields, _add_user),
    Command(f"{ADMIN}#delete-user", "Delete users",
            lambda: [_jid_field("accountjids", "The accounts to delete", multi=True)], _delete_user),
    Command(f"{ADMIN}#change-user-password", "Change a user's password",
            lambda: [_jid_field("accountjid", "The account's address"),
                     forms.Field("password", "text-private", label="The new password")], _change_password),
    Command(f"{ADMIN}#end-user-session", "End users' sessions",
            lambda: [_jid_field("accountjids", "The users (or one resource's full address)", multi=True)],
            _end_sessions),
    Command(f"{ADMIN}#announce", "Send an announcement to all online users",
            lambda: [forms.Field("subject", "text-single", label="Subject"),
                     forms.Field("announcement", "text-multi", label="Announcement")], _announce),
    Command(f"{ADMIN}#get-online-users-list", "List the online users", _max_items, _online_list),
    Command(f"{ADMIN}#get-online-users-num", "Count the online users", None, _online_count),
    Command(f"{ADMIN}#get-registered-users-num", "Count the registered users", None, _registered_count),
)
