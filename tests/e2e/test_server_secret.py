"""The server's secret ([server] secret_file, default <data_dir>/server.key): what
an unknown user is shown stays the same across restarts, as a real account's
salt does, so a restart does not tell who has an account."""

from __future__ import annotations

import base64
import os

from tests.e2e.harness import SASL_NS, RawClient, run_twistd

USERS = {"kim@example.test": "kim-password"}


def _server_first(srv, user: str) -> tuple[bytes, int]:
    """The salt and iteration count SCRAM-SHA-256 shows for *user*."""
    with RawClient(srv.port, srv.cert_path()) as c:
        c.open()
        c.starttls()
        first = f"n,,n={user},r={base64.b64encode(os.urandom(12)).decode()}".encode()
        c.send(f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>{base64.b64encode(first).decode()}</auth>")
        challenge = c.next_element()
        assert challenge.tag == f"{{{SASL_NS}}}challenge", challenge.tag
        attrs = dict(item.split(b"=", 1) for item in base64.b64decode(challenge.text or "").split(b","))
        return attrs[b"s"], int(attrs[b"i"])


def test_unknown_users_look_the_same_after_a_restart(own_server):
    srv = own_server(users=USERS)
    known, unknown = _server_first(srv, "kim"), _server_first(srv, "nobody-here")
    assert (srv.data_dir / "server.key").stat().st_mode & 0o777 == 0o600
    assert srv.exited_cleanly(srv.terminate())
    srv.start()
    assert _server_first(srv, "kim") == known
    assert _server_first(srv, "nobody-here") == unknown


def test_a_given_secret_file_must_exist(own_server, tmp_path):
    srv = own_server()
    assert srv.exited_cleanly(srv.terminate())
    missing = tmp_path / "cluster.key"
    srv.overrides = {"server": {"secret_file": str(missing)}}
    srv.write_config()
    done = run_twistd(srv.config_path, srv.root)
    assert done.returncode != 0
    assert f"server.secret_file: '{missing}' does not exist" in done.stdout + done.stderr
