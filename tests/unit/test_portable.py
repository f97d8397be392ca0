"""``fedxmpp import`` and ``fedxmpp export`` (XEP-0227), run in-process on SQLite."""

from __future__ import annotations

import base64
import io
import re
import sys
from pathlib import Path

import pytest

from fedxmpp import cli
from fedxmpp.config import Config, load
from fedxmpp.storage import Storage, open_storage
from fedxmpp.storage.credentials import derive

PASSWORD = "Juliet-Secret-99"

FILE = f"""<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='example.test'>
    <user name='juliet' password='{PASSWORD}'>
      <query xmlns='jabber:iq:roster'>
        <item jid='romeo@other.test' name='Romeo' subscription='both'><group>Friends</group><group>Verona</group></item>
        <item jid='nurse@example.test' subscription='none' ask='subscribe'/>
        <item jid='tybalt@elsewhere.test' subscription='from'/>
      </query>
      <presence xmlns='jabber:client' from='paris@elsewhere.test' to='juliet@example.test' type='subscribe'/>
      <offline-messages>
        <message xmlns='jabber:client' from='romeo@other.test/orchard' to='juliet@example.test' type='chat'>
          <body>Neither, fair saint</body>
          <delay xmlns='urn:xmpp:delay' from='example.test' stamp='2020-07-21T00:32:29Z'>Offline Storage</delay>
        </message>
      </offline-messages>
      <vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN></vCard>
      <query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Juliet</defaultnick></exodus></query>
      <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
        <configure node='urn:xmpp:avatar:metadata'>
          <x xmlns='jabber:x:data' type='submit'>
            <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>
            <field var='pubsub#access_model'><value>open</value></field>
            <field var='pubsub#max_items'><value>5</value></field>
          </x>
        </configure>
      </pubsub>
      <pubsub xmlns='http://jabber.org/protocol/pubsub'>
        <items node='urn:xmpp:avatar:metadata'>
          <item id='abc'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='1'/></metadata></item>
        </items>
      </pubsub>
      <archive xmlns='urn:xmpp:pie:0#mam'>
        <result xmlns='urn:xmpp:mam:2' id='old-1'>
          <forwarded xmlns='urn:xmpp:forward:0'>
            <delay xmlns='urn:xmpp:delay' stamp='2021-01-02T03:04:05.5Z'/>
            <message xmlns='jabber:client' from='juliet@example.test/balcony' to='romeo@other.test' type='chat'>
              <body>Wherefore art thou</body>
            </message>
          </forwarded>
        </result>
      </archive>
      <query xmlns='jabber:iq:privacy'><list name='x'/></query>
    </user>
  </host>
</server-data>
"""


@pytest.fixture
def run(storage_config_file: Path, capsys):
    def run(*args: str, config: Path | None = None) -> tuple[int, str, str]:
        status = cli.main(["--config", str(config or storage_config_file), *args])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def second_config(tmp_path: Path) -> Path:
    path = tmp_path / "second.toml"
    path.write_text('[server]\ndomains = ["example.test", "other.test"]\ndata_dir = "data2"\n'
                    '[auth]\nscram_iterations = 4096\n', encoding="utf-8")
    return path


def with_storage(cfg: Config, work):
    async def run(reactor):
        storage = await open_storage(cfg, reactor)
        try:
            return await work(storage)
        finally:
            storage.close()
    return cli.run_async(run)


async def snapshot(storage: Storage, user: str = "juliet", domain: str = "example.test") -> dict:
    version, roster = await storage.roster.get_roster(user, domain)
    return {
        "roster": roster,
        "vcard": await storage.keyval.get(user, domain, "vcard"),
        "private": await storage.keyval.list_keys(user, domain, "private"),
        "offline": [s for _, s in await storage.offline.read(user, domain, 0, 100)],
        "nodes": await storage.pubsub.nodes(user, domain),
        "items": [i.item_id for i in await storage.pubsub.items(user, domain, "urn:xmpp:avatar:metadata")],
        "archive": [(e.timestamp, e.stanza) for e in
                    (await storage.portable.export_accounts(domain, [user]))[0].archive],
        "password": await storage.accounts.check_password(user, domain, PASSWORD),
    }


def write(tmp_path: Path, text: str, name: str = "dump.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reads_every_part_of_a_user(run, storage_cfg, tmp_path):
    """The password is hashed (never stored), the roster keeps subscription, ask,
    names, groups and the pending request, and vCard, private XML, offline
    message, PEP node (configuration and item) and archive arrive; the privacy
    list, which fedxmpp does not keep, is named in a note."""
    status, out, err = run("import", str(write(tmp_path, FILE)))
    assert status == 0, err
    assert "1 created" in out and "4 roster items" in out
    assert "skipped 1 x <query xmlns='jabber:iq:privacy'>" in err
    got = with_storage(storage_cfg, snapshot)
    roster = {i.jid: i for i in got["roster"]}
    romeo = roster["romeo@other.test"]
    assert (romeo.subscription, romeo.name, romeo.groups) == ("both", "Romeo", ("Friends", "Verona"))
    assert roster["nurse@example.test"].ask and roster["nurse@example.test"].subscription == "none"
    assert roster["tybalt@elsewhere.test"].subscription == "from"
    paris = roster["paris@elsewhere.test"]
    assert paris.pending_in and paris.hidden
    assert b"Juliet Capulet" in got["vcard"]
    assert got["private"] == ["{exodus:prefs}exodus"]
    assert len(got["offline"]) == 1 and "Neither, fair saint" in got["offline"][0]
    [node] = got["nodes"]
    assert node.config["pubsub#access_model"] == "open" and node.config["pubsub#max_items"] == "5"
    assert got["items"] == ["abc"]
    [(when, stanza)] = got["archive"]
    assert when == 1609556645_500000 and "Wherefore art thou" in stanza
    assert got["password"]
    database = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert PASSWORD.encode() not in database


def test_export_then_import_elsewhere_keeps_everything(run, storage_cfg, tmp_path):
    """fedxmpp export -> fedxmpp import into another database -> export again gives
    the same document (archive ids aside: each server makes its own), and the
    SCRAM keys still accept the password."""
    assert run("import", str(write(tmp_path, FILE)))[0] == 0
    status, out, err = run("export", str(tmp_path / "one.xml"))
    assert status == 0 and out.startswith("exported 1 accounts"), err
    assert (tmp_path / "one.xml").stat().st_mode & 0o777 == 0o600
    other = second_config(tmp_path)
    assert run("import", str(tmp_path / "one.xml"), config=other)[0] == 0
    assert run("export", str(tmp_path / "two.xml"), config=other)[0] == 0

    def without_ids(text: str) -> str:
        return re.sub(r"<result xmlns='urn:xmpp:mam:2' id='[^']*'", "<result", text)

    assert without_ids((tmp_path / "one.xml").read_text()) == without_ids((tmp_path / "two.xml").read_text())
    assert with_storage(storage_cfg, snapshot) == with_storage(load(other), snapshot)


def test_split_layout_is_read_through_xinclude(run, storage_cfg, tmp_path):
    """export --split writes XEP-0227 §5.1's layout; import follows its XIncludes."""
    assert run("import", str(write(tmp_path, FILE)))[0] == 0
    assert run("export", "--split", "--domain", "example.test", str(tmp_path / "split"))[0] == 0
    assert (tmp_path / "split" / "example.test" / "juliet.xml").exists()
    other = second_config(tmp_path)
    status, out, err = run("import", str(tmp_path / "split" / "server-data.xml"), config=other)
    assert status == 0 and "1 created" in out, err
    assert with_storage(load(other), snapshot)["password"]


def test_reimport_skip_merge_and_replace_are_idempotent(run, storage_cfg, tmp_path):
    """Importing twice skips the account; merging twice adds nothing twice (roster,
    offline messages, archive); replace drops what the file no longer names."""
    path = write(tmp_path, FILE)
    assert run("import", str(path))[0] == 0
    first = with_storage(storage_cfg, snapshot)
    status, out, _ = run("import", str(path))
    assert status == 0 and "1 skipped" in out
    for _ in range(2):
        status, out, _ = run("import", "--existing", "merge", str(path))
        assert status == 0 and "1 merged" in out
    assert with_storage(storage_cfg, snapshot) == first
    smaller = write(tmp_path, FILE.replace("<item jid='tybalt@elsewhere.test' subscription='from'/>", ""), "b.xml")
    assert run("import", "--existing", "merge", str(smaller))[0] == 0
    assert "tybalt@elsewhere.test" in [i.jid for i in with_storage(storage_cfg, snapshot)["roster"]]
    status, out, _ = run("import", "--existing", "replace", str(smaller))
    assert status == 0 and "1 replaced" in out
    after = with_storage(storage_cfg, snapshot)
    assert "tybalt@elsewhere.test" not in [i.jid for i in after["roster"]]
    assert len(after["offline"]) == 1 and len(after["archive"]) == 1


def test_ejabberd_double_base64_scram_credentials(run, storage_cfg, tmp_path):
    """ejabberd 23.01 writes the base64 text it keeps, base64-encoded again; Prosody
    writes plain base64.  Both log in with the password (SCRAM-SHA-1 only)."""
    creds = derive("ejb-pw-1", "sha-1", 4096, salt=b"0123456789abcdef")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def element(twice: bool) -> str:
        enc = (lambda d: b64(b64(d).encode())) if twice else b64
        return (f"<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
                f"<iter-count>4096</iter-count><salt>{enc(creds.salt)}</salt>"
                f"<server-key>{enc(creds.server_key)}</server-key><stored-key>{enc(creds.stored_key)}</stored-key>"
                f"</scram-credentials>")

    text = (f"<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'>"
            f"<user name='ejb'>{element(True)}</user><user name='pro'>{element(False)}</user></host></server-data>")
    status, _, err = run("import", str(write(tmp_path, text)))
    assert status == 0, err

    async def check(storage: Storage) -> list[bool]:
        return [await storage.accounts.check_password(u, "example.test", "ejb-pw-1") for u in ("ejb", "pro")]

    assert with_storage(storage_cfg, check) == [True, True]


@pytest.mark.parametrize("text, problem", [
    ("<!DOCTYPE x [<!ENTITY a 'b'>]><server-data xmlns='urn:xmpp:pie:0'/>", "a DOCTYPE or entity declaration is not allowed"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'><user name='a' password='p'>\n"
     "<query xmlns='jabber:iq:roster'><item jid='b@example.test' subscription='bogus'/></query></user></host>"
     "</server-data>", "<user name='a'> of <host jid='example.test'>: <item jid='b@example.test'> in the roster: "
                     "subscription 'bogus'"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'><user name='a'/></host></server-data>",
     "<user name='a'> of <host jid='example.test'>: has neither a password nor SCRAM credentials"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='nothere.test'><user name='a' password='p'/></host>"
     "</server-data>", "<host jid='nothere.test'>: the host is not a hosted domain"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'><user name='a' password='p'>",
     ": not well-formed XML"),
    ("<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
     "<xi:include href='../../etc/passwd'/></server-data>", "outside the directory of the main file"),
    ("<roster xmlns='jabber:iq:roster'/>", "the document is <roster xmlns='jabber:iq:roster'>"),
    ("<server-data xmlns='urn:xmpp:pie:0'><user name='a' password='p'/></server-data>", "<user> outside a <host>"),
])
def test_bad_files_are_one_line_naming_file_and_element(run, storage_cfg, tmp_path, text, problem):
    """A file that cannot be imported: one line naming the file (and line and
    element), no traceback, and no account half-imported."""
    path = write(tmp_path, text)
    status, out, err = run("import", str(path))
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"fedxmpp: {path}"), err
    assert problem in err and "Traceback" not in err

    async def users(storage: Storage) -> list[str]:
        return await storage.accounts.list_users("example.test")

    assert with_storage(storage_cfg, users) == []


def test_a_bad_account_after_good_ones_leaves_the_good_ones(run, storage_cfg, tmp_path, monkeypatch):
    """Atomic per account: accounts in batches before a bad one stay imported; the
    message says how many."""
    monkeypatch.setattr("fedxmpp.portable.command.BATCH", 1)
    text = ("<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'>"
            "<user name='good' password='good-pw'><query xmlns='jabber:iq:roster'><item jid='x@other.test'/></query>"
            "</user><user name='bad' password='p'><query xmlns='jabber:iq:roster'><item/></query></user>"
            "</host></server-data>")
    status, _, err = run("import", str(write(tmp_path, text)))
    assert status == 1 and "<user name='bad'> of <host jid='example.test'>: <item> in the roster has no 'jid'" in err
    assert "1 account(s) before it were imported" in err

    async def users(storage: Storage) -> list[str]:
        return await storage.accounts.list_users("example.test")

    assert with_storage(storage_cfg, users) == ["good"]
