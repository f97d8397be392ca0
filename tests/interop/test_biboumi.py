"""biboumi (the Debian package) attached to fedxmpp as irc.example.test, bridging to
ngircd: an XMPP user (slixmpp with its MUC plugin) joins an IRC channel through
biboumi, and a plain IRC client on a raw socket sees what the user says, and back.

biboumi's addressing: the channel #test on IRC server HOST is the MUC room
``#test%HOST@irc.example.test``; biboumi tries the TLS ports 6697 and 6670 of HOST,
then plain 6667, so ngircd listens on port 6667 of a loopback address where that
port is free (127.0.0.1 when possible).

Everything listens on loopback, runs in the test's temporary directory, and is
stopped by PID with bounded waits.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import HarnessError, ServerProcess, free_port, logged_in, run, wait_for

pytestmark = pytest.mark.interop

BIBOUMI = shutil.which("biboumi")
NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None)
IRC_DOMAIN = "irc.example.test"
SECRET = "biboumi-component-secret"
USERS = {"ingrid@example.test": "ingrid-secret"}
WAIT = 20.0


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _irc_address() -> str:
    """A loopback address whose IRC ports (6667, and biboumi's TLS tries 6697, 6670)
    are all closed, so that ngircd can take 6667 there."""
    candidates = ["127.0.0.1"] + [f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
                                  for _ in range(10)]
    for host in candidates:
        if any(_listening(host, port) for port in (6667, 6697, 6670)):
            continue
        try:
            with socket.socket() as s:
                s.bind((host, 6667))
        except OSError:
            continue
        return host
    raise HarnessError("no loopback address with port 6667 free")


class Child:
    """A non-Python child process with its output in a file, stopped by its PID."""

    def __init__(self, name: str, root: Path, cmd: list[str]) -> None:
        self.name = name
        self.log = root / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class IrcClient:
    """A plain IRC client on a socket (RFC 1459/2812), reading line by line."""

    def __init__(self, host: str, port: int, nick: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.buffer = b""
        self.lines: list[str] = []
        self.nick = nick
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :interop watcher")
        self.expect(lambda line: f" 001 {nick} " in line)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, predicate, timeout: float = WAIT) -> str:
        """The first line (from now on) matching *predicate*; PINGs are answered."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if line.startswith("PING "):
                    self.send("PONG " + line[5:])
                elif predicate(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"IRC: nothing matching in {timeout}s; last lines: {self.lines[-15:]}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise HarnessError(f"IRC connection closed; last lines: {self.lines[-15:]}")
            self.buffer += data

    def close(self) -> None:
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[dict]:
    if BIBOUMI is None or NGIRCD is None:
        pytest.skip("biboumi and ngircd are not installed (Debian: apt-get install biboumi ngircd)")
    irc_host = _irc_address()
    children: list[Child] = []
    (tmp_path / "ngircd.motd").write_text("interop\n")
    (tmp_path / "ngircd.conf").write_text(f"""[Global]
Name = irc.interop.test
Info = fedxmpp interop
Listen = {irc_host}
Ports = 6667
MotdFile = {tmp_path / 'ngircd.motd'}
PidFile = {tmp_path / 'ngircd.pid'}
[Limits]
MaxNickLength = 30
[Options]
DNS = no
Ident = no
PAM = no
""")
    component_port = free_port()
    srv = ServerProcess(tmp_path / "server", overrides={"components": {
        "listen": [f"tcp:{component_port}:interface=127.0.0.1"],
        "component": [{"domain": IRC_DOMAIN, "secret": SECRET, "name": "IRC gateway"}]}})
    srv.import_users(USERS)
    try:
        ngircd = Child("ngircd", tmp_path, [NGIRCD, "--nodaemon", "--config", str(tmp_path / "ngircd.conf")])
        children.append(ngircd)
        wait_for(lambda: ngircd.alive() or _listening(irc_host, 6667), WAIT, what="ngircd listening")
        srv.start()
        (tmp_path / "biboumi.cfg").write_text(f"""hostname={IRC_DOMAIN}
password={SECRET}
xmpp_server_ip=127.0.0.1
port={component_port}
db_name={tmp_path / 'biboumi.sqlite'}
identd_port=0
log_level=1
realname_customization=true
policy_directory={tmp_path}
""")
        biboumi = Child("biboumi", tmp_path, [BIBOUMI, str(tmp_path / "biboumi.cfg")])
        children.append(biboumi)
        wait_for(lambda: biboumi.alive() or "Component irc.example.test connected" in srv.log_text(), WAIT,
                 what="biboumi attached")
        yield {"server": srv, "irc_host": irc_host, "children": children}
    finally:
        for child in reversed(children):
            child.stop()
        if srv.running:
            srv.stop()


def test_xmpp_user_and_irc_client_talk_through_biboumi(bridge):
    """ingrid@example.test joins #test%HOST@irc.example.test; an IRC client in #test
    sees her join and her message, and ingrid receives the IRC client's reply as a
    groupchat message from the room."""
    host = bridge["irc_host"]
    room = f"#test%{host}@{IRC_DOMAIN}"
    irc = IrcClient(host, 6667, "watcher")
    try:
        irc.send("JOIN #test")
        irc.expect(lambda line: " 366 watcher #test " in line)

        async def scenario():
            async with logged_in(bridge["server"], "ingrid@example.test/laptop", USERS["ingrid@example.test"]) as ingrid:
                ingrid.xmpp.register_plugin("xep_0045")
                await ingrid.available()
                muc = ingrid.xmpp.plugin["xep_0045"]
                await muc.join_muc_wait(room, "ingrid", maxstanzas=0, timeout=WAIT)
                await asyncio.to_thread(irc.expect, lambda line: line.startswith(":ingrid!") and " JOIN " in line)

                ingrid.xmpp.send_message(mto=room, mbody="hello from xmpp", mtype="groupchat")
                line = await asyncio.to_thread(irc.expect, lambda l: " PRIVMSG #test :" in l)
                assert line.startswith(":ingrid!") and line.endswith("PRIVMSG #test :hello from xmpp"), line

                irc.send("PRIVMSG #test :hello from irc")
                while True:
                    msg = await ingrid.next_message(timeout=WAIT)
                    if msg["type"] == "groupchat" and msg["body"] == "hello from irc":
                        break
                assert msg["from"].bare == room.lower() or msg["from"].bare == room
                assert msg["from"].resource == "watcher"
        run(scenario(), timeout=90)
    finally:
        irc.close()
