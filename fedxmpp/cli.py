"""The ``fedxmpp`` admin command: accounts, certificates and federation checks.

Every command reads the same configuration as the server (``--config``) and
works while the server runs (SQLite in WAL mode with a busy timeout).  A
problem is reported as one line, ``fedxmpp: ...``, on stderr: exit status 1
for an error, 2 for bad usage, 130 when interrupted.  Passwords are never
echoed, printed or logged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, NoReturn, Sequence, TypeVar

from fedxmpp.admin import client as admin_client
from fedxmpp.admin.commands import (
    BadRequest, Connected, Kick, Reload, ReloadFailed, RemoveAccount, Status, UnknownAccount,
)
from fedxmpp.config import Config, ConfigError, check_certificates_dir, load
from fedxmpp.storage import AccountStore, open_storage
from fedxmpp.storage.credentials import (
    CredentialSet, InvalidPassword, check_password_length, derive_all, prepare_password,
)
from fedxmpp.storage.errors import AccountError, StorageError
from fedxmpp.xml.jid import JID, InvalidJID, prep_domain

T = TypeVar("T")

PROG = "fedxmpp"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# import-users lists at most this many problems before summarising.
MAX_REPORTED = 20
# Below this many accounts, starting worker processes costs more than it saves.
MIN_PARALLEL = 64


class CommandError(Exception):
    """A problem to report as one ``fedxmpp: ...`` line and exit status 1."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        return _fail(f"{e} (try '{PROG} --help')", EXIT_USAGE)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    try:
        cfg = load(args.config)
        return int(args.command(cfg, args))
    except _UsageError as e:
        return _fail(f"{e} (try '{PROG} --help')", EXIT_USAGE)
    except (ConfigError, CommandError, StorageError, AccountError, InvalidPassword) as e:
        return _fail(str(e), EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def _build_parser() -> argparse.ArgumentParser:
    import fedxmpp

    parser = _Parser(prog=PROG, description="fedxmpp administration: accounts, certificates and the "
                                            "running server.")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: built-in defaults)")
    parser.add_argument("--version", action="version", version=f"{PROG} {fedxmpp.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[Config, argparse.Namespace], int],
                help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=func)
        return sub

    def password_options(sub: argparse.ArgumentParser) -> None:
        # Neither: asked for twice, unechoed, when standard input is a terminal.
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--password", metavar="PW",
                           help="the password (visible to other local users in the process list)")
        group.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of standard input")

    sub = command("adduser", cmd_adduser, "create an account")
    sub.add_argument("jid", metavar="JID", help="the account's address, user@domain")
    password_options(sub)

    sub = command("deluser", cmd_deluser, "delete an account with everything stored for it; a running "
                  "server ends its sessions and tells its contacts")
    sub.add_argument("jid", metavar="JID")

    sub = command("passwd", cmd_passwd, "set an account's password")
    sub.add_argument("jid", metavar="JID")
    password_options(sub)

    sub = command("listusers", cmd_listusers, "list the accounts of a domain")
    sub.add_argument("domain", metavar="DOMAIN")

    sub = command("import-users", cmd_import_users,
                  "create accounts from FILE, one 'user@domain,password' per line "
                  "('#' comments and blank lines skipped; all or nothing)")
    sub.add_argument("file", metavar="FILE", help="the file to read, or - for standard input")

    sub = command("import", cmd_import,
                  "import accounts with their rosters, vCards, private XML, offline messages, PEP nodes and "
                  "archives from a XEP-0227 file (as written by Prosody's prosody-migrator, ejabberd's "
                  "export_piefxis or 'fedxmpp export'); each account all or nothing")
    sub.add_argument("file", metavar="FILE", help="the XEP-0227 document (its XIncludes are followed)")
    sub.add_argument("--existing", choices=("skip", "merge", "replace"), default="skip",
                     help="an account that exists already: leave it (skip, the default), add the file's data "
                          "to it, the file winning item by item (merge), or delete it and import it anew "
                          "(replace); merge and replace need the server stopped")
    sub.add_argument("--domain", metavar="DOMAIN", help="import the accounts of this host only")

    sub = command("export", cmd_export,
                  "write every account (with rosters, vCards, private XML, offline messages, PEP nodes and "
                  "archives) of the hosted domains, or of one, to a XEP-0227 file (readable by its owner only)")
    sub.add_argument("target", metavar="FILE", help="the file to write, or with --split the directory")
    sub.add_argument("--domain", metavar="DOMAIN", help="export this hosted domain only")
    sub.add_argument("--split", action="store_true",
                     help="write the directory layout of XEP-0227 section 5.1 (TARGET/server-data.xml, one "
                          "file per host and per user, joined with XInclude)")

    sub = command("check", cmd_check,
                  "check federation with DOMAIN as a remote server sees it: SRV records, addresses, "
                  "the certificate presented (names, expiry) and whether it verifies")
    sub.add_argument("domain", metavar="DOMAIN")
    sub.add_argument("--nameserver", metavar="ADDRESS[:PORT]", action="append",
                     help="DNS server to ask, may be repeated (default: s2s.nameservers, else the system's)")

    sub = command("migrate-storage", cmd_migrate_storage,
                  "copy everything in the configured storage (storage.url) to the database at URL, "
                  "which must be empty; stop the server first")
    sub.add_argument("--to", required=True, metavar="URL",
                     help="sqlite:///PATH or postgresql://USER@HOST/DATABASE")
    sub.add_argument("--overwrite", action="store_true",
                     help="delete what the target database holds before copying")

    command("status", cmd_status, "show the running server's version, uptime and sessions by kind")
    command("connected", cmd_connected, "list the running server's client sessions, one per line: "
            "full JID, address, since, TLS, stream management")
    sub = command("kick", cmd_kick, "end the sessions of JID (a bare JID: all of them) on the running "
                  "server with a <policy-violation/> stream error")
    sub.add_argument("jid", metavar="JID")
    sub.add_argument("--reason", metavar="TEXT", help="the text sent with the stream error")
    command("reload", cmd_reload, "make the running server read its configuration and certificates again "
            "(as SIGHUP does); settings that need a restart are named and kept")

    cert = commands.add_parser("cert", help="TLS certificates", description="TLS certificates")
    cert_commands = cert.add_subparsers(title="cert commands", metavar="COMMAND", required=True)
    sub = cert_commands.add_parser("generate", help="write a self-signed certificate for DOMAIN",
                                   description="write a self-signed certificate for DOMAIN "
                                               "into tls.certificates")
    sub.set_defaults(command=cmd_cert_generate)
    sub.add_argument("domain", metavar="DOMAIN")
    return parser


# --- commands -------------------------------------------------------------------

def cmd_adduser(cfg: Config, args: argparse.Namespace) -> int:
    user, domain = _account(args.jid, cfg, hosted=True)
    password = _password(args)
    check_password_length(password, cfg.auth.min_password_length)
    prepare_password(password)  # reject before opening anything
    _with_accounts(cfg, lambda accounts: accounts.create(user, domain, password))
    print(f"added {user}@{domain}")
    return 0


def cmd_deluser(cfg: Config, args: argparse.Namespace) -> int:
    """Through the running server when there is one (it ends the account's sessions
    and tells its contacts), else straight in the database."""
    user, domain = _account(args.jid, cfg, hosted=False)

    async def work(reactor: Any) -> str:
        try:
            answer = await admin_client.call(reactor, cfg.server.admin_socket, RemoveAccount, jid=f"{user}@{domain}")
        except admin_client.ServerNotRunning:
            storage = await open_storage(cfg, reactor)
            try:
                await storage.accounts.delete(user, domain)
            finally:
                storage.close()
            return f"deleted {user}@{domain}"
        except (UnknownAccount, BadRequest, admin_client.AdminSocketError) as e:
            raise CommandError(_text(e)) from None
        return f"deleted {user}@{domain}; the running server ended its {answer['sessions']} session(s)"

    print(run_async(work))
    return 0


def cmd_migrate_storage(cfg: Config, args: argparse.Namespace) -> int:
    """Refuses while the server runs: what it wrote after the copy's snapshot would be left behind."""
    from fedxmpp.config import storage_url_problem
    from fedxmpp.storage.copy import TargetNotEmpty, copy_storage
    from fedxmpp.storage.postgres import redact

    problem = storage_url_problem(args.to)
    if problem:
        raise CommandError(f"--to: {problem}")

    def progress(table: str, rows: int) -> None:
        print(f"{table}: {rows} rows", flush=True)

    async def work(reactor: Any) -> dict[str, int]:
        try:
            await admin_client.call(reactor, cfg.server.admin_socket, Status)
        except admin_client.ServerNotRunning:
            return await copy_storage(cfg, args.to, reactor, overwrite=args.overwrite, progress=progress)
        raise CommandError(f"the server is running (it answers on {str(cfg.server.admin_socket)!r}): "
                           "stop it first, so that nothing it writes during the copy is left behind")

    try:
        counts = run_async(work)
    except TargetNotEmpty as e:
        raise CommandError(f"{e}; nothing was copied (--overwrite replaces what it holds)") from None
    print(f"copied {sum(counts.values())} rows in {len(counts)} tables to {redact(args.to)}")
    return 0


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    answer = _ask_server(cfg, Status)
    print(f"{PROG} {answer['version']}, up {_duration(answer['uptime'])}")
    print(f"c2s sessions: {answer['c2s']} bound, {answer['hibernating']} hibernating (stream management)")
    print(f"s2s streams: {answer['s2s_in']} incoming, {answer['s2s_out']} outgoing")
    print(f"components: {answer['components']} connected")
    return 0


def cmd_connected(cfg: Config, args: argparse.Namespace) -> int:
    start = 0
    while start >= 0:
        answer = _ask_server(cfg, Connected, start=start)
        for session in json.loads(answer["sessions"]):
            since = datetime.datetime.fromtimestamp(session["since"], datetime.timezone.utc)
            print(f"{session['jid']} {session['address']} since={since.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                  f"tls={session['tls']} sm={session['sm']}")
        start = answer["next"]
    return 0


def cmd_kick(cfg: Config, args: argparse.Namespace) -> int:
    arguments = {"jid": args.jid} if args.reason is None else {"jid": args.jid, "reason": args.reason}
    answer = _ask_server(cfg, Kick, **arguments)
    if not answer["sessions"]:
        raise CommandError(f"{args.jid} has no session on the running server")
    print(f"ended {answer['sessions']} session(s) of {args.jid}")
    return 0


def cmd_reload(cfg: Config, args: argparse.Namespace) -> int:
    answer = _ask_server(cfg, Reload)
    applied = f"; applied {answer['applied']}" if answer["applied"] else ""
    if answer["refused"]:
        raise CommandError(f"reloaded the certificates{applied}; not applied, changing them needs a restart: "
                           f"{answer['refused']}")
    print(f"reloaded the certificates{applied}")
    return 0


def _ask_server(cfg: Config, command: type, **arguments: Any) -> dict[str, Any]:
    """The running server's answer to *command*; a one-line CommandError when it
    is not running or refuses."""

    async def work(reactor: Any) -> dict[str, Any]:
        return await admin_client.call(reactor, cfg.server.admin_socket, command, **arguments)

    try:
        return run_async(work)
    except admin_client.ServerNotRunning:
        raise CommandError(f"the server is not running (nothing listens on {str(cfg.server.admin_socket)!r}, "
                           f"server.admin_socket in {cfg.source})") from None
    except (BadRequest, UnknownAccount, ReloadFailed, admin_client.AdminSocketError) as e:
        raise CommandError(_text(e)) from None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{days}d {text}" if days else text


def _text(error: Exception) -> str:
    """An AMP error's description (bytes on the wire) as text."""
    arg = error.args[0] if error.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def cmd_passwd(cfg: Config, args: argparse.Namespace) -> int:
    user, domain = _account(args.jid, cfg, hosted=False)
    password = _password(args)
    check_password_length(password, cfg.auth.min_password_length)
    prepare_password(password)
    _with_accounts(cfg, lambda accounts: accounts.set_password(user, domain, password))
    print(f"changed the password of {user}@{domain}")
    return 0


def cmd_listusers(cfg: Config, args: argparse.Namespace) -> int:
    domain = _domain(args.domain)
    for user in _with_accounts(cfg, lambda accounts: accounts.list_users(domain)):
        print(f"{user}@{domain}")
    return 0


def cmd_check(cfg: Config, args: argparse.Namespace) -> int:
    from fedxmpp.config import parse_nameserver
    from fedxmpp.s2s.check import run_check
    from fedxmpp.s2s.resolver import S2SResolver
    from fedxmpp.tls import PeerVerifier, TLSSetupError

    domain = _domain(args.domain)
    nameservers = tuple(args.nameserver or cfg.s2s.nameservers)
    for text in nameservers:
        try:
            parse_nameserver(text)
        except ValueError as e:
            raise CommandError(f"--nameserver {text!r} {e}") from None
    try:
        verifier = PeerVerifier(cfg.s2s.ca_file if cfg.s2s.ca_file != Path() else None)
    except TLSSetupError as e:
        raise CommandError(str(e)) from None

    async def work(reactor: Any) -> bool:
        resolver = S2SResolver.from_config(reactor, nameservers=nameservers, routes=cfg.s2s.routes,
                                           connect_timeout=cfg.s2s.connect_timeout)
        return await run_check(reactor, resolver, verifier, domain, lambda line: print(line, flush=True))

    # The global reactor: TLS started on a connection (STARTTLS) writes through it.
    from twisted.internet import reactor

    return 0 if run_async(work, reactor) else EXIT_ERROR


def cmd_cert_generate(cfg: Config, args: argparse.Namespace) -> int:
    from fedxmpp.tls import generate_self_signed

    domain = _domain(args.domain)
    check_certificates_dir(cfg)
    try:
        cert, key = generate_self_signed(domain, cfg.tls.certificates)
    except OSError as e:
        raise CommandError(f"cannot write the certificate for {domain}: "
                           f"{e.strerror or e}") from None
    print(f"certificate {cert}")
    print(f"private key {key}")
    return 0


# --- import and export (XEP-0227) ----------------------------------------------------

def cmd_import(cfg: Config, args: argparse.Namespace) -> int:
    from fedxmpp.portable.command import ImportFailed, import_file

    domain = None if args.domain is None else _hosted_domain(args.domain, cfg)
    if args.existing != "skip" and _server_running(cfg):
        raise CommandError(f"the server is running: stop it before importing with --existing {args.existing} "
                           f"(its sessions and roster cache would keep the old data); --existing skip only "
                           f"creates new accounts and may run beside it")
    try:
        counts, seconds = import_file(cfg, Path(args.file), existing=args.existing, domain=domain,
                                      derive=derive_parallel, run=run_async)
    except ImportFailed as e:
        raise CommandError(str(e)) from None
    done = ", ".join(f"{counts[k]} {k}" for k in ("created", "merged", "replaced", "skipped", "failed") if counts[k])
    print(f"imported {args.file}: {done or 'no accounts'}; {counts['roster items']} roster items; "
          f"in {seconds:.1f} s")
    return EXIT_ERROR if counts["failed"] else 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from fedxmpp.portable.command import export

    domains = [_hosted_domain(args.domain, cfg)] if args.domain is not None else list(cfg.server.domains)
    try:
        count, seconds = export(cfg, Path(args.target), domains=domains, split=args.split, run=run_async)
    except OSError as e:
        raise CommandError(f"cannot write {e.filename or args.target}: {e.strerror}") from None
    print(f"exported {count} accounts to {args.target} in {seconds:.1f} s")
    return 0


def _hosted_domain(text: str, cfg: Config) -> str:
    domain = _domain(text)
    if domain not in cfg.server.domains:
        raise CommandError(f"{domain} is not a hosted domain (server.domains in {cfg.source})")
    return domain


def _server_running(cfg: Config) -> bool:
    """Whether a server answers on the admin socket."""

    async def work(reactor: Any) -> bool:
        try:
            await admin_client.call(reactor, cfg.server.admin_socket, Status)
        except admin_client.ServerNotRunning:
            return False
        except (BadRequest, admin_client.AdminSocketError):
            pass
        return True

    return run_async(work)


# --- import-users ---------------------------------------------------------------

@dataclass(frozen=True)
class _ImportLine:
    number: int
    user: str
    domain: str
    password: str


def cmd_import_users(cfg: Config, args: argparse.Namespace) -> int:
    started = time.monotonic()
    name = "<stdin>" if args.file == "-" else args.file
    lines, problems = parse_import(_read_import_file(args.file), cfg)
    if not problems and lines:
        problems = _existing_accounts(cfg, lines)
    if problems:
        for number, problem in problems[:MAX_REPORTED]:
            print(f"{PROG}: {name}:{number}: {problem}", file=sys.stderr)
        if len(problems) > MAX_REPORTED:
            print(f"{PROG}: {name}: ... and {len(problems) - MAX_REPORTED} more", file=sys.stderr)
        return _fail(f"{name}: {len(problems)} problem(s); nothing imported", EXIT_ERROR)
    credentials = derive_parallel([line.password for line in lines], cfg.auth.scram_iterations)
    prepared = [(line.user, line.domain, creds) for line, creds in zip(lines, credentials)]
    count = _with_accounts(cfg, lambda accounts: accounts.create_many_prepared(prepared))
    print(f"imported {count} accounts in {time.monotonic() - started:.1f} s")
    return 0


def _read_import_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror}") from None


def parse_import(data: bytes, cfg: Config) -> tuple[list[_ImportLine], list[tuple[int, str]]]:
    """The accounts in an import file, and (line number, problem) for each bad line.

    A line is ``user@domain,password``: the password is everything after the
    first comma following the '@' (localparts may contain commas, domains
    cannot), kept exactly, spaces included.  Problems never quote the line.
    """
    lines: list[_ImportLine] = []
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            problems.append((number, "not UTF-8"))
            continue
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        at = text.find("@")
        comma = text.find(",", at + 1) if at >= 0 else text.find(",")
        if comma < 0:
            problems.append((number, "expected user@domain,password"))
            continue
        password = text[comma + 1:]
        try:
            user, domain = _parse_account(text[:comma], cfg, hosted=True)
            prepare_password(password)
        except _BadAddress as e:
            # Never quote the line: on a malformed one, the split may have put
            # part of the password into the address.
            problems.append((number, f"the address {e.problem}"))
            continue
        except InvalidPassword as e:
            problems.append((number, str(e)))
            continue
        first = seen.setdefault((user, domain), number)
        if first != number:
            problems.append((number, f"{user}@{domain} is already on line {first}"))
            continue
        lines.append(_ImportLine(number, user, domain, password))
    return lines, problems


def _existing_accounts(cfg: Config, lines: Sequence[_ImportLine]) -> list[tuple[int, str]]:
    domains = sorted({line.domain for line in lines})

    async def existing(accounts: AccountStore) -> dict[str, set[str]]:
        return {domain: set(await accounts.list_users(domain)) for domain in domains}

    taken = _with_accounts(cfg, existing)
    return [(line.number, f"account {line.user}@{line.domain} already exists")
            for line in lines if line.user in taken[line.domain]]


def derive_parallel(passwords: Sequence[str], iterations: int) -> list[CredentialSet]:
    """SCRAM credentials for each password, PBKDF2 spread over every usable core.

    Workers are spawned, not forked: the parent may hold an SQLite connection
    and threads, neither of which survives a fork safely.
    """
    workers = _usable_cpus()
    if workers < 2 or len(passwords) < MIN_PARALLEL:
        return [derive_all(p, iterations) for p in passwords]
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)
    try:
        # Small chunks keep the cores evenly busy and Ctrl-C prompt (~0.25 s per chunk).
        chunksize = max(1, min(len(passwords) // (workers * 8), 50))
        results: list[CredentialSet] = list(
            pool.map(partial(derive_all, iterations=iterations), passwords, chunksize=chunksize))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle: it cancels the remaining work, and the
    # workers exit when they finish their current chunk, without tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- helpers --------------------------------------------------------------------

class _BadAddress(Exception):
    """Why an account address is refused: *problem* follows the address, *detail* explains."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


def _parse_account(text: str, cfg: Config, *, hosted: bool) -> tuple[str, str]:
    try:
        jid = JID.parse(text)
    except InvalidJID as e:
        raise _BadAddress("is not a valid address", str(e)) from None
    if jid.user is None:
        raise _BadAddress("has no user part (expected user@domain)")
    if jid.resource is not None:
        raise _BadAddress("has a resource; give the bare address user@domain")
    if hosted and jid.host not in cfg.server.domains:
        raise _BadAddress(f"is not on a hosted domain (server.domains in {cfg.source})")
    return jid.user, jid.host


def _account(text: str, cfg: Config, *, hosted: bool) -> tuple[str, str]:
    """(localpart, domain) of an account address given as its own argument."""
    try:
        return _parse_account(text, cfg, hosted=hosted)
    except _BadAddress as e:
        raise CommandError(f"{text!r} {e.problem}" + (f": {e.detail}" if e.detail else "")) from None


def _domain(text: str) -> str:
    try:
        return prep_domain(text)
    except InvalidJID as e:
        raise CommandError(f"{text!r} is not a valid domain: {e}") from None


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if not args.password_stdin:
        if not sys.stdin.isatty():
            raise _UsageError("give --password or --password-stdin (standard input is not a terminal "
                              "to ask on)")
        return _ask_password()
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("no password on standard input")
    return password


def _ask_password() -> str:
    """The password typed twice on the terminal, not echoed."""
    import getpass

    password = getpass.getpass("Password: ")
    if not password:
        raise CommandError("no password given")
    if getpass.getpass("Again: ") != password:
        raise CommandError("the two passwords differ")
    return password


def _with_accounts(cfg: Config, work: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Open the storage, run *work* on its account store, close it."""

    async def run(reactor: Any) -> T:
        storage = await open_storage(cfg, reactor)
        try:
            return await work(storage.accounts)
        finally:
            storage.close()

    return run_async(run)


def run_async(work: Callable[[Any], Awaitable[T]], reactor: Any = None) -> T:
    """Run ``work(reactor)`` to completion on a private reactor and return its result.

    A reactor of its own (never the global one) so that each call starts clean
    and the command can run inside a process whose reactor already runs (tests).
    SIGINT stops it and raises KeyboardInterrupt.  A caller that needs the global
    reactor (``check``: Twisted's STARTTLS schedules its writes there) passes it.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.selectreactor import SelectReactor
    from twisted.python.failure import Failure

    if reactor is None:
        reactor = SelectReactor()
    outcome: list[Any] = []

    def finished(result: object) -> None:
        outcome.append(result)
        reactor.stop()

    def start() -> None:
        Deferred.fromCoroutine(_as_coroutine(work(reactor))).addBoth(finished)

    reactor.callWhenRunning(start)
    try:
        with _sigint_stops(reactor):
            reactor.run(installSignalHandlers=False)
    finally:
        # The reactor cannot run again; release its wake-up pipe now, not never.
        if reactor.waker is not None:
            reactor.waker.connectionLost(None)
    if not outcome:
        raise KeyboardInterrupt
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


@contextmanager
def _sigint_stops(reactor: Any) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: reactor.callFromThread(reactor.stop))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())
