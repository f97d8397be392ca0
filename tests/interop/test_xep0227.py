"""Moving accounts from Prosody 0.12 and ejabberd 23.01 (Debian) to fedxmpp in XEP-0227 files.

Each peer runs on a free loopback port with its own configuration and data
directory; accounts are created with its own tool (``prosodyctl register``,
``ejabberd_auth:try_register``) and filled over XMPP with slixmpp: a roster with
a mutual subscription, names and groups, an outgoing request still pending, a
vCard, a private XML document, a PEP item, and (ejabberd) a message stored while
the user was offline.  The peer is then exported by its own exporter —
``prosody-migrator`` to its xep0227 store, ejabberd's ``export_piefxis`` — and
``fedxmpp import`` reads the files.  Logging in to fedxmpp with the *original
passwords* proves that the SCRAM keys came across (the files hold no password);
the client then reads its roster, vCard, private XML and PEP item and receives the
offline message.

``prosody-migrator`` writes its xep0227 files into Prosody's data directory,
which is compiled into the script (/var/lib/prosody); the test runs the same
script with that one constant pointing into its temporary directory (and
``--root``, so that it does not switch to the prosody user).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, free_port, logged_in, run, tls_context, wait_for
from tests.e2e.s2s_pki import CertAuthority, self_signed
from tests.interop.ejabberd import EjabberdProcess, ejabberd_installed

pytestmark = pytest.mark.interop

PROSODY = shutil.which("prosody")
PROSODYCTL = shutil.which("prosodyctl")
MIGRATOR = shutil.which("prosody-migrator")
LUA = shutil.which("lua5.4")
WAIT = 20.0
PRO = "pro.test"
EJB = "ejb.test"
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2"}
NICK = "http://jabber.org/protocol/nick"

# Runs prosody-migrator with its compiled-in data directory replaced by $MIGRATOR_DATA_DIR.
RUN_MIGRATOR = """
local data = assert(os.getenv("MIGRATOR_DATA_DIR"))
local f = assert(io.open(assert(os.getenv("MIGRATOR"))))
local src = f:read("a"); f:close()
src = src:gsub("^#![^\\n]*\\n", "")
local n
src, n = src:gsub("CFG_DATADIR='[^']*'", function() return ("CFG_DATADIR=%q"):format(data) end)
assert(n == 1, "prosody-migrator has no CFG_DATADIR line")
assert(load(src, "=prosody-migrator"))(...)
"""


def _client(jid: str, password: str, cafile: Path) -> Any:
    import slixmpp

    xmpp = slixmpp.ClientXMPP(jid, password)
    xmpp.ssl_context = tls_context(cafile)
    xmpp.use_aiodns = False
    xmpp.whitespace_keepalive = False
    for plugin in ("xep_0054", "xep_0060", "xep_0199"):
        xmpp.register_plugin(plugin)
    return xmpp


async def _connect(jid: str, password: str, port: int, cafile: Path) -> Any:
    xmpp = _client(jid, password, cafile)
    started = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    xmpp.connect("127.0.0.1", port)
    await asyncio.wait_for(started, WAIT)
    return xmpp


async def _disconnect(xmpp: Any) -> None:
    await asyncio.wait_for(xmpp.disconnect(wait=1.0), 5)


async def _ping(xmpp: Any) -> None:
    await xmpp.plugin["xep_0199"].send_ping(xmpp.boundjid.host, timeout=WAIT)


async def provision(domain: str, port: int, cafile: Path, *, offline_message: bool) -> None:
    """alice and bob subscribe to each other; alice names bob and groups him, asks carol@else.test (pending), stores
    a vCard, private XML and a PEP nick; bob then sends alice a message while she
    is offline."""
    from slixmpp.xmlstream import ET

    alice = await _connect(f"alice@{domain}/a", PASSWORDS["alice"], port, cafile)
    bob = await _connect(f"bob@{domain}/b", PASSWORDS["bob"], port, cafile)
    for xmpp in (alice, bob):
        xmpp.auto_authorize = None  # answered by hand below
        xmpp.auto_subscribe = False
    alice.send_presence()
    bob.send_presence()
    await alice.update_roster(f"bob@{domain}", name="Bobby", groups=["Friends", "Work"])
    for a, b in ((alice, bob), (bob, alice)):
        a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
        await _ping(a)
        b.send_presence(pto=a.boundjid.bare, ptype="subscribed")
        await _ping(b)

    async def subscription(xmpp: Any, contact: str) -> str:
        roster = await xmpp.get_roster(timeout=WAIT)
        return next(str(i["subscription"]) for i in roster["roster"] if str(i["jid"]) == contact)

    assert await subscription(alice, f"bob@{domain}") == "both"
    assert await subscription(bob, f"alice@{domain}") == "both"
    await alice.update_roster("carol@else.test", name="Carol", groups=["Elsewhere"])
    alice.send_presence(pto="carol@else.test", ptype="subscribe")
    vcard = alice.plugin["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    vcard["NICKNAME"] = "ali"
    await alice.plugin["xep_0054"].publish_vcard(vcard)
    iq = alice.make_iq_set()
    query = ET.SubElement(iq.xml, "{jabber:iq:private}query")
    query.append(ET.fromstring("<prefs xmlns='urn:example:prefs'><colour>blue</colour></prefs>"))
    await iq.send(timeout=WAIT)
    nick = ET.fromstring(f"<nick xmlns='{NICK}'>ali</nick>")
    await alice.plugin["xep_0060"].publish(alice.boundjid.bare, NICK, payload=nick, id="current", timeout=WAIT)
    await _ping(alice)
    await _disconnect(alice)
    if offline_message:
        await asyncio.sleep(0.5)
        bob.send_message(mto=f"alice@{domain}", mbody="while you were away", mtype="chat")
    await _ping(bob)
    await _disconnect(bob)


async def check_moved(server: ServerProcess, domain: str, *, offline_message: bool) -> None:
    """alice logs in to fedxmpp with her old password and finds her data."""
    from slixmpp.xmlstream import ET

    received: asyncio.Queue = asyncio.Queue()
    xmpp = _client(f"alice@{domain}/new", PASSWORDS["alice"], server.cert_path(domain))
    started = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    xmpp.add_event_handler("message", received.put_nowait)
    xmpp.connect("127.0.0.1", server.port)
    await asyncio.wait_for(started, WAIT)
    try:
        roster = await xmpp.get_roster(timeout=WAIT)
        items = {str(i["jid"]): i for i in roster["roster"]}
        bob = items[f"bob@{domain}"]
        assert (bob["subscription"], bob["name"], sorted(bob["groups"])) == ("both", "Bobby", ["Friends", "Work"])
        carol = items["carol@else.test"]
        assert (carol["subscription"], carol["ask"], carol["name"]) == ("none", "subscribe", "Carol")

        vcard = await xmpp.plugin["xep_0054"].get_vcard(xmpp.boundjid.bare, timeout=WAIT)
        assert vcard["vcard_temp"]["FN"] == "Alice Liddell"

        iq = xmpp.make_iq_get()
        query = ET.SubElement(iq.xml, "{jabber:iq:private}query")
        ET.SubElement(query, "{urn:example:prefs}prefs")
        answer = await iq.send(timeout=WAIT)
        colour = answer.xml.find("{jabber:iq:private}query/{urn:example:prefs}prefs/{urn:example:prefs}colour")
        assert colour is not None and colour.text == "blue", answer

        if domain == PRO:  # ejabberd's export_piefxis leaves PEP out
            items_iq = await xmpp.plugin["xep_0060"].get_items(xmpp.boundjid.bare, NICK, timeout=WAIT)
            nick = items_iq.xml.find(f".//{{{NICK}}}nick")
            assert nick is not None and nick.text == "ali", items_iq

        if offline_message:
            xmpp.send_presence()
            msg = await asyncio.wait_for(received.get(), WAIT)
            assert (msg["body"], msg["from"].bare) == ("while you were away", f"bob@{domain}")
    finally:
        await _disconnect(xmpp)


# -- Prosody ------------------------------------------------------------------------------------


class Prosody:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.port = free_port()
        self.cert = self_signed(PRO, root / "certs")
        self.log_path = root / "prosody.log"
        self.config = root / "prosody.cfg.lua"
        self.config.write_text(f'''-- generated by tests/interop/test_xep0227.py
run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{self.data}"
log = {{ debug = "{self.log_path}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
s2s_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "vcard"; "private"; "pep"; "offline" }}
authentication = "internal_hashed"
storage = "internal"
ssl = {{ certificate = "{self.cert}"; key = "{self.cert.with_suffix(".key")}" }}
VirtualHost "{PRO}"
''')
        self.proc: subprocess.Popen | None = None

    def register(self, user: str, password: str) -> None:
        done = subprocess.run([PROSODYCTL, "--config", str(self.config), "register", user, PRO, password],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise HarnessError(f"prosodyctl register {user} failed: {done.stdout} {done.stderr}")

    def start(self) -> None:
        with open(self.root / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen([PROSODY, "--config", str(self.config), "-F"], cwd=self.root, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise HarnessError(f"prosody exited with {self.proc.returncode}")
            return self.log_path.exists() and "Activated service 'c2s'" in self.log_path.read_text(errors="replace")

        wait_for(ready, WAIT, what="prosody listening")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def migrate_to_xep0227(self, out: Path) -> list[Path]:
        """prosody-migrator from Prosody's files to its xep0227 store: one file per user."""
        out.mkdir()
        self._migrate(f'type = "internal"; path = "{self.data}"', 'type = "xep0227"', xep0227_dir=out)
        return sorted(out.glob("*.xml"))

    def migrate_from_xep0227(self, files: Path) -> None:
        """prosody-migrator from its xep0227 store (*files*: ``user@host.xml``) to Prosody's files."""
        self._migrate('type = "xep0227"', f'type = "internal"; path = "{self.data}"', xep0227_dir=files)

    def _migrate(self, source: str, target: str, *, xep0227_dir: Path) -> None:
        stores = '"accounts"; "roster"; "vcard"; "private"; "pep-pubsub"'
        config = self.root / "migrator.cfg.lua"
        config.write_text(f'''
input {{ {source}; hosts = {{ ["{PRO}"] = {{ {stores} }} }} }}
output {{ {target}; hosts = {{ ["{PRO}"] = {{ {stores} }} }} }}
''')
        script = self.root / "run-migrator.lua"
        script.write_text(RUN_MIGRATOR)
        done = subprocess.run([LUA, str(script), "--root", f"--config={config}", "input", "output"],
                              capture_output=True, text=True, timeout=60,
                              env={"MIGRATOR": MIGRATOR, "MIGRATOR_DATA_DIR": str(xep0227_dir),
                                   "PATH": "/usr/bin:/bin"})
        if done.returncode != 0 or "Done!" not in done.stderr:
            raise HarnessError(f"prosody-migrator failed: {done.stdout} {done.stderr}")


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if None in (PROSODY, PROSODYCTL, MIGRATOR, LUA) or not ejabberd_installed():
        pytest.skip("prosody (with prosody-migrator, lua5.4) and ejabberd are needed (Debian packages)")
    root = tmp_path_factory.mktemp("xep0227")

    prosody = Prosody(root / "prosody")
    try:
        for user, password in PASSWORDS.items():
            prosody.register(user, password)
        prosody.start()
        run(provision(PRO, prosody.port, prosody.cert, offline_message=False), timeout=90)
    finally:
        prosody.stop()
    prosody_files = prosody.migrate_to_xep0227(root / "prosody-export")

    ca = CertAuthority(root / "ca")
    cert, _ = ca.issue(EJB, root / "ejb-certs")
    ejabberd = EjabberdProcess(root / "ejabberd", hosts=[EJB], certs={EJB: cert}, dialback_hosts=[],
                               address="127.0.0.1", s2s_port=free_port(), dns_port=free_port(), ca_file=ca.path,
                               extra_modules="\n  mod_vcard: {}\n  mod_private: {}\n  mod_offline: {}"
                                             "\n  mod_caps: {}\n  mod_pubsub:\n    plugins: [flat, pep]")
    ejabberd.start()
    try:
        for user, password in PASSWORDS.items():
            ejabberd.register(f"{user}@{EJB}", password)
        run(provision(EJB, ejabberd.port, ca.path, offline_message=True), timeout=90)
        export_dir = root / "ejabberd-export"
        export_dir.mkdir()
        result = ejabberd.rpc("ejabberd_piefxis", "export_server", f'"{export_dir}"')
        if result != "ok":
            raise HarnessError(f"export_piefxis failed: {result}")
    finally:
        ejabberd.stop()
    # The main file is the one that includes the host files.
    [ejabberd_main] = [p for p in export_dir.glob("*.xml") if "<xi:include" in p.read_text() and "<host" not in
                       p.read_text()]

    server = ServerProcess(root / "fedxmpp", overrides={"server": {"domains": [PRO, EJB]}})
    try:
        for path in prosody_files:
            server.cli("import", str(path))
        server.cli("import", str(ejabberd_main))
        server.start()
        yield SimpleNamespace(server=server, prosody_files=prosody_files, ejabberd_main=ejabberd_main, root=root)
    finally:
        server.stop()


def test_prosody_accounts_log_in_with_their_old_passwords_and_find_their_data(moved):
    """prosody-migrator's XEP-0227 files (SCRAM-SHA-1 keys, no passwords): alice logs
    in to fedxmpp with her Prosody password and finds her roster (subscription
    'both' with name and groups; a pending 'ask'), vCard, private XML and PEP nick."""
    run(check_moved(moved.server, PRO, offline_message=False), timeout=90)


def test_ejabberd_accounts_log_in_with_their_old_passwords_and_find_their_data(moved):
    """ejabberd's export_piefxis directory (XInclude, double-base64 SCRAM values):
    alice logs in with her ejabberd password, finds her roster, vCard and private
    XML, and receives the message that waited for her on ejabberd."""
    run(check_moved(moved.server, EJB, offline_message=True), timeout=90)


def test_importing_the_same_files_again_changes_nothing(moved):
    """Re-importing skips the existing accounts (the default); with --existing
    merge the roster and offline messages are not duplicated."""
    server = moved.server
    again = server.cli("import", str(moved.ejabberd_main))
    assert "2 skipped" in again.stdout, again.stdout
    refused = server.cli("import", "--existing", "merge", str(moved.ejabberd_main), check=False)
    assert refused.returncode == 1 and "the server is running" in refused.stderr, refused


def test_fedxmpp_export_is_read_by_prosody(moved):
    """fedxmpp export (while the server runs) -> prosody-migrator's xep0227 reader ->
    a fresh Prosody: alice logs in with her password and finds her roster and
    vCard.  Prosody's reader wants one ``user@host.xml`` document per user, so the
    test cuts fedxmpp's single document into those (XEP-0227 does not prescribe
    that layout)."""
    import xml.etree.ElementTree as ET

    root = moved.root
    moved.server.cli("export", "--domain", PRO, str(root / "fedxmpp-export.xml"))
    files = root / "for-prosody"
    files.mkdir()
    pie = "urn:xmpp:pie:0"
    ET.register_namespace("", pie)
    for host in ET.parse(root / "fedxmpp-export.xml").getroot():
        for user in host:
            document = ET.Element(f"{{{pie}}}server-data")
            ET.SubElement(document, f"{{{pie}}}host", jid=host.get("jid")).append(user)
            ET.ElementTree(document).write(files / f"{user.get('name')}@{host.get('jid')}.xml")
    prosody = Prosody(root / "prosody-again")
    prosody.migrate_from_xep0227(files)
    prosody.start()
    try:
        async def scenario() -> None:
            alice = await _connect(f"alice@{PRO}/back", PASSWORDS["alice"], prosody.port, prosody.cert)
            try:
                roster = await alice.get_roster(timeout=WAIT)
                items = {str(i["jid"]): i for i in roster["roster"]}
                bob = items[f"bob@{PRO}"]
                assert (bob["subscription"], bob["name"], sorted(bob["groups"])) == \
                    ("both", "Bobby", ["Friends", "Work"])
                vcard = await alice.plugin["xep_0054"].get_vcard(alice.boundjid.bare, timeout=WAIT)
                assert vcard["vcard_temp"]["FN"] == "Alice Liddell"
            finally:
                await _disconnect(alice)

        run(scenario(), timeout=90)
    finally:
        prosody.stop()
