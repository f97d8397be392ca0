"""``fedxmpp import`` and ``fedxmpp export``: accounts in XEP-0227 files.

Both work on the storage through its public stores (any engine), not through
the running server.  Export reads consistent snapshots, a batch of accounts per
transaction, so it may run while the server does.  Import writes accounts in
batches of :data:`BATCH` per transaction, each account all or nothing.

Import and a running server: creating accounts that do not exist yet is safe
while the server runs (nobody can be logged in to them, and nothing of theirs is
cached).  Merging into or replacing an existing account is not: its online
sessions and the server's roster cache would keep the old state, and no roster
push would tell its clients.  So with ``--existing merge`` or ``replace`` the
command refuses to run while the server answers on its admin socket.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from fedxmpp.config import Config
from fedxmpp.portable.inbound import Notes, ParsedAccount, parse_user
from fedxmpp.portable.outbound import user_xml
from fedxmpp.portable.reader import PIE, PieError, read_users
from fedxmpp.storage import AccountBundle, Existing, Storage, open_storage
from fedxmpp.storage.credentials import CredentialSet, InvalidPassword, prepare_password

#: Accounts written per transaction.
BATCH = 500
#: Accounts read per transaction when exporting.
EXPORT_BATCH = 200

Derive = Callable[[Sequence[str], int], list[CredentialSet]]


class ImportFailed(Exception):
    """The one-line reason the import stopped (accounts of earlier batches stay imported)."""


def import_file(cfg: Config, path: Path, *, existing: Existing, domain: str | None, derive: Derive,
                run: Callable[..., Any], err: IO[str] | None = None) -> tuple[Counter[str], float]:
    """Import the accounts of *path*; the outcomes counted, and the seconds taken.

    Accounts that fail are reported on *err*, one line each; a file that cannot be
    read further stops the import with :class:`ImportFailed`, after the batches
    before it were written.
    """
    started = time.monotonic()
    counts: Counter[str] = Counter()
    notes = Notes()
    if err is None:
        err = sys.stderr

    async def work(reactor: Any) -> None:
        storage = await open_storage(cfg, reactor)
        try:
            for batch in _batches(_parsed(path, cfg, domain, notes), BATCH):
                await _import_batch(storage, batch, existing, cfg, derive, counts, err)
        finally:
            storage.close()

    assert err is not None
    try:
        run(work)
    except PieError as e:
        imported = sum(counts[k] for k in ("created", "merged", "replaced"))
        raise ImportFailed(f"{e} (stopped there; {imported} account(s) before it were imported)") from None
    for what, n in sorted(notes.skipped.items()):
        print(f"fedxmpp: note: skipped {n} x {what} (not supported by fedxmpp's import)", file=err)
    return counts, time.monotonic() - started


def _parsed(path: Path, cfg: Config, domain: str | None, notes: Notes) -> Iterator[ParsedAccount]:
    for u in read_users(path):
        account = parse_user(u, notes)
        b = account.bundle
        if domain is not None and b.domain != domain:
            continue
        if b.domain not in cfg.server.domains:
            raise PieError(f"{u.where}: the host is not a hosted domain "
                           f"(server.domains in {cfg.source}); give --domain to import one host only")
        if account.password is not None:
            try:
                prepare_password(account.password)
            except InvalidPassword as e:
                raise PieError(f"{u.where}: {e}") from None
        yield account


def _batches(items: Iterator[ParsedAccount], size: int) -> Iterator[list[ParsedAccount]]:
    batch: list[ParsedAccount] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _import_batch(storage: Storage, batch: list[ParsedAccount], existing: Existing, cfg: Config,
                        derive: Derive, counts: Counter[str], err: IO[str]) -> None:
    if existing == "skip":
        # Hashing passwords costs far more than asking: none for accounts that stay as they are.
        users = {d: set(await storage.accounts.list_users(d)) for d in {a.bundle.domain for a in batch}}
        kept = [a.bundle.user in users[a.bundle.domain] for a in batch]
        counts["skipped"] += sum(kept)
        batch = [a for a, exists in zip(batch, kept) if not exists]
    with_password = [a for a in batch if a.password is not None]
    derived = iter(derive([a.password for a in with_password if a.password is not None],
                          cfg.auth.scram_iterations))
    bundles: list[AccountBundle] = []
    for account in batch:
        if account.password is not None:
            bundles.append(replace(account.bundle, credentials=next(derived)))
        else:
            bundles.append(account.bundle)
    results = await storage.portable.import_accounts(bundles, existing)
    for account, result in zip(batch, results):
        if result.outcome is None:
            counts["failed"] += 1
            print(f"fedxmpp: {account.where}: not imported: {result.error}", file=err)
        else:
            counts[result.outcome] += 1
            counts["roster items"] += len(account.bundle.roster) if result.outcome != "skipped" else 0


# -- export ---------------------------------------------------------------------------------------

def export(cfg: Config, target: Path, *, domains: Sequence[str], split: bool,
           run: Callable[..., Any]) -> tuple[int, float]:
    """Write the accounts of *domains* to *target* (a file, or with *split* a directory
    in the layout of XEP-0227 §5.1); how many, and the seconds taken."""
    started = time.monotonic()
    count = 0

    async def work(reactor: Any) -> None:
        nonlocal count
        storage = await open_storage(cfg, reactor)
        try:
            writer = _SplitWriter(target) if split else _FileWriter(target)
            with writer:
                for domain in domains:
                    writer.host(domain)
                    users = await storage.accounts.list_users(domain)
                    for i in range(0, len(users), EXPORT_BATCH):
                        for bundle in await storage.portable.export_accounts(domain, users[i:i + EXPORT_BATCH]):
                            writer.user(bundle)
                            count += 1
                    writer.end_host()
        finally:
            storage.close()

    run(work)
    return count, time.monotonic() - started


_HEADER = "<?xml version='1.0' encoding='UTF-8'?>\n"
_XI = "http://www.w3.org/2001/XInclude"


def _private_file(path: Path) -> IO[str]:
    """*path* opened for writing, readable by its owner only: it holds credentials."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
            .replace('"', "&quot;"))


class _FileWriter:
    """One document holding every host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out: IO[str] | None = None

    def __enter__(self) -> _FileWriter:
        self.out = _private_file(self.path)
        self.out.write(f"{_HEADER}<server-data xmlns='{PIE}'>\n")
        return self

    def host(self, domain: str) -> None:
        assert self.out is not None
        self.out.write(f"<host jid='{_attr(domain)}'>\n")

    def user(self, bundle: AccountBundle) -> None:
        assert self.out is not None
        self.out.write(user_xml(bundle) + "\n")

    def end_host(self) -> None:
        assert self.out is not None
        self.out.write("</host>\n")

    def __exit__(self, *exc: object) -> None:
        assert self.out is not None
        self.out.write("</server-data>\n")
        self.out.close()


class _SplitWriter:
    """XEP-0227 §5.1: DIR/server-data.xml includes DIR/HOST.xml, which includes DIR/HOST/USER.xml."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.hosts: list[str] = []
        self.users: list[str] = []
        self.domain = ""

    def __enter__(self) -> _SplitWriter:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    def host(self, domain: str) -> None:
        self.domain = domain
        self.users = []
        (self.dir / domain).mkdir(mode=0o700, exist_ok=True)

    def user(self, bundle: AccountBundle) -> None:
        # Localparts may hold characters a file name cannot ('/'); such a file gets a safe name.
        name = bundle.user if "/" not in bundle.user and not bundle.user.startswith(".") else \
            "_" + bundle.user.encode("utf-8").hex()
        href = f"{self.domain}/{name}.xml"
        with _private_file(self.dir / href) as out:
            out.write(_HEADER + user_xml(bundle, standalone=True) + "\n")
        self.users.append(urllib.parse.quote(href))

    def end_host(self) -> None:
        with _private_file(self.dir / f"{self.domain}.xml") as out:
            out.write(f"{_HEADER}<host xmlns='{PIE}' xmlns:xi='{_XI}' jid='{_attr(self.domain)}'>\n")
            out.writelines(f"<xi:include href='{_attr(h)}'/>\n" for h in self.users)
            out.write("</host>\n")
        self.hosts.append(urllib.parse.quote(f"{self.domain}.xml"))

    def __exit__(self, *exc: object) -> None:
        with _private_file(self.dir / "server-data.xml") as out:
            out.write(f"{_HEADER}<server-data xmlns='{PIE}' xmlns:xi='{_XI}'>\n")
            out.writelines(f"<xi:include href='{_attr(h)}'/>\n" for h in self.hosts)
            out.write("</server-data>\n")
