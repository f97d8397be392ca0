"""The ``fedxmpp`` admin command, run in-process (and once as a real process)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
import pytest_twisted

from fedxmpp import cli
from fedxmpp.config import Config
from fedxmpp.storage import open_storage
from fedxmpp.storage.credentials import verify_password

SECRET = "Very-Distinctive-Secret-42"


@pytest.fixture
def run(storage_config_file: Path, capsys):
    """Run ``fedxmpp --config <tmp config> ARGS...``; returns (status, stdout, stderr)."""
    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            status = cli.main(["--config", str(storage_config_file), *args])
        finally:
            sys.stdin = sys.__stdin__
        out, err = capsys.readouterr()
        return status, out, err
    return run


def check_password(cfg: Config, user: str, domain: str, password: str) -> bool:
    async def check(reactor) -> bool:
        storage = await open_storage(cfg, reactor)
        try:
            return await storage.accounts.check_password(user, domain, password)
        finally:
            storage.close()
    return cli.run_async(check)


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fedxmpp: ")
    return lines[0]


# --- accounts ---------------------------------------------------------------------------

def test_adduser_and_listusers(run, storage_cfg):
    """adduser creates a working account; listusers prints bare JIDs, sorted."""
    assert run("adduser", "zoe@example.test", "--password", SECRET)[0] == 0
    status, out, _ = run("adduser", "Alice@Example.Test", "--password", SECRET)
    assert status == 0 and out == "added alice@example.test\n"
    assert run("listusers", "example.test")[1] == "alice@example.test\nzoe@example.test\n"
    assert check_password(storage_cfg, "alice", "example.test", SECRET)


def test_adduser_password_from_stdin(run, storage_cfg):
    """--password-stdin takes the first line, without its newline, spaces kept."""
    status, _, _ = run("adduser", "alice@example.test", "--password-stdin", stdin=" two words \r\nignored\n")
    assert status == 0
    assert check_password(storage_cfg, "alice", "example.test", " two words ")


def test_adduser_refuses_empty_stdin(run):
    """An empty standard input is an error, not an empty password."""
    status, _, err = run("adduser", "alice@example.test", "--password-stdin", stdin="")
    assert status == 1 and "no password" in one_error_line(err)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_adduser_and_passwd_ask_on_a_terminal_without_echo(run, storage_cfg, monkeypatch):
    """Without --password or --password-stdin, on a terminal, the password is asked
    twice through getpass (which does not echo); two different answers are an
    error; off a terminal it is a usage error (exit 2)."""
    import getpass

    answers: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys, "stdin", _Terminal())
    answers[:] = [SECRET, SECRET]
    status = cli.main(["--config", str(storage_cfg.source), "adduser", "alice@example.test"])
    assert status == 0 and prompts == ["Password: ", "Again: "]
    assert check_password(storage_cfg, "alice", "example.test", SECRET)
    answers[:] = ["new-password-1", "new-password-2"]
    assert cli.main(["--config", str(storage_cfg.source), "passwd", "alice@example.test"]) == 1
    assert check_password(storage_cfg, "alice", "example.test", SECRET)
    answers[:] = ["new-password-1", "new-password-1"]
    assert cli.main(["--config", str(storage_cfg.source), "passwd", "alice@example.test"]) == 0
    assert check_password(storage_cfg, "alice", "example.test", "new-password-1")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["--config", str(storage_cfg.source), "passwd", "alice@example.test"]) == 2


@pytest.mark.parametrize("command", ["adduser", "passwd"])
def test_a_password_shorter_than_the_minimum_is_refused(run, storage_cfg, storage_config_file, command):
    """[auth] min_password_length (default 8 characters) is enforced by adduser and
    passwd with one line; the setting lowers or raises it."""
    if command == "passwd":
        run("adduser", "alice@example.test", "--password", SECRET)
    status, _, err = run(command, "alice@example.test", "--password", "seven77")
    assert status == 1
    assert one_error_line(err) == "fedxmpp: password too short: at least 8 characters are required"
    storage_config_file.write_text(storage_config_file.read_text().replace("[auth]\n", "[auth]\nmin_password_length = 4\n"))
    assert run(command, "alice@example.test", "--password", "four")[0] == 0
    assert check_password(storage_cfg, "alice", "example.test", "four")


def test_adduser_existing_account(run):
    """Adding an existing account fails with one line and status 1."""
    run("adduser", "alice@example.test", "--password", "first-password")
    status, _, err = run("adduser", "alice@example.test", "--password", "second-password")
    assert status == 1
    assert one_error_line(err) == "fedxmpp: account alice@example.test already exists"


@pytest.mark.parametrize("jid,message", [
    ("alice@elsewhere.test", "not on a hosted domain"),
    ("example.test", "no user part"),
    ("alice@example.test/phone", "has a resource"),
    ("al ice@example.test", "not a valid address"),
])
def test_adduser_bad_address(run, jid, message):
    """Addresses that are not bare accounts of a hosted domain are refused in one line."""
    status, _, err = run("adduser", jid, "--password", "pw")
    assert status == 1 and message in one_error_line(err)


def test_invalid_password_is_not_echoed(run):
    """A rejected password is reported without repeating it."""
    status, out, err = run("adduser", "alice@example.test", "--password", SECRET + "\x07")
    assert status == 1 and "password rejected" in one_error_line(err)
    assert SECRET not in out + err


def test_passwd(run, storage_cfg):
    """passwd replaces the password; an unknown account is an error."""
    run("adduser", "alice@example.test", "--password", "old-password")
    status, out, err = run("passwd", "alice@example.test", "--password-stdin", stdin=SECRET + "\n")
    assert status == 0 and SECRET not in out + err
    assert check_password(storage_cfg, "alice", "example.test", SECRET)
    assert not check_password(storage_cfg, "alice", "example.test", "old")
    status, _, err = run("passwd", "bob@example.test", "--password", SECRET)
    assert status == 1 and one_error_line(err) == "fedxmpp: no such account bob@example.test"


def test_deluser(run):
    """deluser removes the account; deleting it again is an error."""
    run("adduser", "alice@example.test", "--password", SECRET)
    assert run("deluser", "alice@example.test")[:2] == (0, "deleted alice@example.test\n")
    assert run("listusers", "example.test")[1] == ""
    status, _, err = run("deluser", "alice@example.test")
    assert status == 1 and "no such account" in one_error_line(err)


def test_listusers_bad_domain(run):
    """listusers with an invalid domain is a one-line error."""
    status, _, err = run("listusers", "bad domain!")
    assert status == 1 and "not a valid domain" in one_error_line(err)


# --- usage and configuration --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["adduser", "alice@example.test"],                                      # no password option
    ["adduser", "alice@example.test", "--password", "a", "--password-stdin"],  # both
    ["frobnicate"],
    [],
])
def test_usage_errors(run, args):
    """Bad usage prints one line and exits 2."""
    status, _, err = run(*args)
    assert status == 2
    one_error_line(err)


def test_missing_config_file(capsys, tmp_path):
    """A config file that does not exist is one line and status 1, no traceback."""
    status = cli.main(["--config", str(tmp_path / "nope.toml"), "listusers", "example.test"])
    err = capsys.readouterr().err
    assert status == 1 and "file not found" in one_error_line(err)


def test_help(capsys):
    """--help prints usage and succeeds."""
    assert cli.main(["--help"]) == 0
    assert "import-users" in capsys.readouterr().out


# --- import-users -------------------------------------------------------------------------

def test_import_users(run, storage_cfg, tmp_path):
    """import-users creates each account, skips comments and blank lines, keeps
    passwords exactly (commas and spaces included), and reports the count."""
    data = tmp_path / "users.csv"
    data.write_text("# accounts\n\nalice@example.test,pw,with,commas\n"
                    "  # indented comment\nbob@other.test, spaced \r\n"
                    "o,dd@example.test,x\n", encoding="utf-8")
    status, out, err = run("import-users", str(data))
    assert status == 0, err
    assert out.startswith("imported 3 accounts in ")
    assert "pw,with" not in out + err
    assert check_password(storage_cfg, "alice", "example.test", "pw,with,commas")
    assert check_password(storage_cfg, "bob", "other.test", " spaced ")
    assert check_password(storage_cfg, "o,dd", "example.test", "x")


def test_import_users_bad_lines_abort_everything(run, tmp_path):
    """Any bad line is reported with its line number and nothing is imported."""
    data = tmp_path / "users.csv"
    data.write_bytes(b"good@example.test,pw\n"
                     b"nopassword@example.test\n"
                     b"x@elsewhere.test,pw\n"
                     b"empty@example.test,\n"
                     b"good@example.test,again\n"
                     b"\xff@example.test,pw\n")
    status, out, err = run("import-users", str(data))
    assert status == 1
    lines = err.splitlines()
    assert [line.split(":")[2] for line in lines[:-1]] == ["2", "3", "4", "5", "6"]
    assert "already on line 1" in lines[3]
    assert lines[-1].endswith("5 problem(s); nothing imported")
    assert run("listusers", "example.test")[1] == ""


def test_import_users_problems_never_quote_the_line(run, tmp_path):
    """A line missing the '@' of its address, whose password holds one, is
    reported without any of the password."""
    data = tmp_path / "users.csv"
    data.write_text("alice,Pa@ssw0rd.secret,x\nbob@example.test,Pa@ss,w0rd\x07\n")
    status, out, err = run("import-users", str(data))
    assert status == 1
    assert f"{data}:1: the address is not on a hosted domain" in err
    assert f"{data}:2: password rejected" in err
    for fragment in ("Pa@", "ssw0rd", "secret", "w0rd"):
        assert fragment not in out + err


def test_import_users_existing_accounts_abort(run, tmp_path):
    """Accounts that already exist are listed and nothing is imported."""
    run("adduser", "taken@example.test", "--password", SECRET)
    data = tmp_path / "users.csv"
    data.write_text("new@example.test,pw\ntaken@example.test,pw\n")
    status, _, err = run("import-users", str(data))
    assert status == 1
    assert f"{data}:2: account taken@example.test already exists" in err
    assert run("listusers", "example.test")[1] == "taken@example.test\n"


def test_import_users_missing_file(run, tmp_path):
    """An unreadable file is one line and status 1."""
    status, _, err = run("import-users", str(tmp_path / "missing.csv"))
    assert status == 1 and "No such file" in one_error_line(err)


def test_import_uses_worker_processes(run, storage_cfg, tmp_path, monkeypatch):
    """A large import derives credentials in a process pool, and they verify."""
    pools = []
    real = cli.ProcessPoolExecutor

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            pools.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(cli, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(cli, "_usable_cpus", lambda: 2)
    data = tmp_path / "users.csv"
    count = cli.MIN_PARALLEL + 6
    data.write_text("".join(f"user{i}@example.test,pw{i}\n" for i in range(count)))
    status, out, err = run("import-users", str(data))
    assert status == 0, err
    assert out.startswith(f"imported {count} accounts")
    assert len(pools) == 1 and pools[0]["max_workers"] == 2
    assert check_password(storage_cfg, f"user{count - 1}", "example.test", f"pw{count - 1}")


def test_derive_parallel_matches_order():
    """derive_parallel returns credentials in the order of the passwords."""
    passwords = [f"pw{i}" for i in range(5)]
    results = cli.derive_parallel(passwords, 4096)
    for password, creds in zip(passwords, results):
        assert verify_password(creds["sha-256"], password)
        assert verify_password(creds["sha-1"], password)


def test_run_async_stops_on_sigint():
    """SIGINT while the private reactor waits stops it and raises
    KeyboardInterrupt; the previous SIGINT handler is back afterwards."""
    from twisted.internet.defer import Deferred

    before = signal.getsignal(signal.SIGINT)

    async def hang(reactor) -> None:
        reactor.callLater(0.01, os.kill, os.getpid(), signal.SIGINT)
        await Deferred()  # never fires

    with pytest.raises(KeyboardInterrupt):
        cli.run_async(hang)
    assert signal.getsignal(signal.SIGINT) is before


def test_run_async_returns_and_raises():
    """run_async returns the coroutine's result and re-raises its exception."""
    async def answer(reactor) -> int:
        return 42

    async def fail(reactor) -> None:
        raise ValueError("boom")

    assert cli.run_async(answer) == 42
    with pytest.raises(ValueError, match="boom"):
        cli.run_async(fail)


# --- certificates -------------------------------------------------------------------------

def test_cert_generate(run, storage_cfg, monkeypatch):
    """cert generate calls fedxmpp.tls.generate_self_signed for the prepared
    domain in tls.certificates and prints both paths."""
    calls = []

    def generate_self_signed(domain: str, directory: Path) -> tuple[Path, Path]:
        calls.append((domain, directory))
        return directory / f"{domain}.crt", directory / f"{domain}.key"

    monkeypatch.setitem(sys.modules, "fedxmpp.tls",
                        types.SimpleNamespace(generate_self_signed=generate_self_signed))
    status, out, _ = run("cert", "generate", "Example.Test")
    assert status == 0
    assert calls == [("example.test", storage_cfg.tls.certificates)]
    assert f"{storage_cfg.tls.certificates / 'example.test.crt'}" in out
    assert f"{storage_cfg.tls.certificates / 'example.test.key'}" in out


def test_cert_generate_write_error(run, monkeypatch):
    """An OSError while writing the certificate is a one-line error."""
    def generate_self_signed(domain: str, directory: Path) -> tuple[Path, Path]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setitem(sys.modules, "fedxmpp.tls",
                        types.SimpleNamespace(generate_self_signed=generate_self_signed))
    status, _, err = run("cert", "generate", "example.test")
    assert status == 1 and "Permission denied" in one_error_line(err)


# --- alongside a running server, and as a real process -----------------------------------

@pytest_twisted.ensureDeferred
async def test_works_while_the_server_has_the_database_open(storage_cfg, storage_config_file, capsys):
    """With the server's storage open on the running reactor, the command writes
    an account the server then sees, and vice versa."""
    from twisted.internet import reactor

    server = await open_storage(storage_cfg, reactor)
    try:
        await server.accounts.create("fromserver", "example.test", "pw")
        assert cli.main(["--config", str(storage_config_file), "adduser", "fromcli@example.test",
                         "--password", SECRET]) == 0
        assert await server.accounts.check_password("fromcli", "example.test", SECRET)
        assert cli.main(["--config", str(storage_config_file), "listusers", "example.test"]) == 0
        assert capsys.readouterr().out.endswith("fromcli@example.test\nfromserver@example.test\n")
    finally:
        server.close()


def test_as_a_real_process(storage_config_file):
    """The installed ``fedxmpp`` script (or ``python -m fedxmpp.cli``) works end
    to end and never prints the password it was given."""
    script = Path(sys.executable).with_name("fedxmpp")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fedxmpp.cli"]
    base = [*command, "--config", str(storage_config_file)]
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    added = subprocess.run([*base, "adduser", "alice@example.test", "--password-stdin"],
                           input=SECRET + "\n", capture_output=True, text=True, timeout=60, env=env)
    assert added.returncode == 0, added.stderr
    listed = subprocess.run([*base, "listusers", "example.test"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert listed.stdout == "alice@example.test\n"
    failed = subprocess.run([*base, "adduser", "alice@example.test", "--password", SECRET],
                            capture_output=True, text=True, timeout=60, env=env)
    assert failed.returncode == 1
    assert failed.stderr == "fedxmpp: account alice@example.test already exists\n"
    assert SECRET not in added.stdout + added.stderr + failed.stdout + failed.stderr
