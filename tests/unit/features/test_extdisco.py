"""XEP-0215 external service discovery (fedxmpp.features.extdisco) and its
``[external_services]`` configuration."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from fedxmpp import config
from fedxmpp.config import ExternalServiceConfig
from fedxmpp.features.extdisco import EXTDISCO, turn_credentials
from tests.unit.features.world import NOW, World, condition, payload

SECRET = "turn-shared-secret"
SERVICES = (ExternalServiceConfig(type="stun", host="stun.example.test"),
            ExternalServiceConfig(type="turn", host="turn.example.test", port=3479, transport="udp", name="Relay"),
            ExternalServiceConfig(type="turns", host="turn.example.test", transport="tcp"))


def world(**extra) -> World:
    return World(external_services={"secret": SECRET, "service": SERVICES, "credential_lifetime": 600, **extra})


def services(el) -> list[dict[str, str]]:
    return [dict(s.attributes) for s in payload(el).elements()]


def test_turn_credentials_are_the_turn_rest_api_scheme():
    """username '<expiry>:<user>', password base64(HMAC-SHA1(secret, username)),
    computed here independently of the module."""
    username, password = turn_credentials(SECRET, "alice@example.test", 1_700_000_600)
    assert username == "1700000600:alice@example.test"
    expected = base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected


def test_a_local_user_gets_every_service_with_credentials_for_turn():
    """STUN is listed as is, with its standard port; TURN services are restricted
    and carry credentials valid for credential_lifetime from the clock's now."""
    w = world()
    a = w.login("alice@example.test/phone")
    reply = w.iq(a, "get", f"<services xmlns='{EXTDISCO}'/>", to="example.test")
    assert reply["type"] == "result" and payload(reply).uri == EXTDISCO
    stun, turn, turns = services(reply)
    assert stun == {"type": "stun", "host": "stun.example.test", "port": "3478", "transport": "udp"}
    expiry = int(NOW) + 600
    username, password = turn_credentials(SECRET, "alice@example.test", expiry)
    assert turn == {"type": "turn", "host": "turn.example.test", "port": "3479", "transport": "udp",
                    "name": "Relay", "restricted": "1", "username": username, "password": password,
                    "expires": "2023-11-14T22:23:20Z"}
    assert turns["port"] == "5349" and turns["transport"] == "tcp" and turns["username"] == username


def test_credentials_follow_the_clock():
    """Later requests get later expiries (never a credential for ever)."""
    w = world()
    a = w.login("alice@example.test/phone")
    first = services(w.iq(a, "get", f"<services xmlns='{EXTDISCO}' type='turn'/>", to="example.test"))
    w.clock.advance(100)
    second = services(w.iq(a, "get", f"<services xmlns='{EXTDISCO}' type='turn'/>", to="example.test", id="q2"))
    assert [s["type"] for s in first] == ["turn"]
    assert first[0]["username"].split(":")[0] == str(int(NOW) + 600)
    assert second[0]["username"].split(":")[0] == str(int(NOW) + 700)


def test_type_filter_is_echoed():
    w = world()
    a = w.login("alice@example.test/phone")
    reply = w.iq(a, "get", f"<services xmlns='{EXTDISCO}' type='stun'/>", to="example.test")
    assert payload(reply)["type"] == "stun"
    assert [s["host"] for s in services(reply)] == ["stun.example.test"]


def test_credentials_request_for_one_service_and_for_an_unknown_one():
    """<credentials/> names a service by host and type (and port): its credentials;
    a service not configured: <item-not-found/>; none named: <bad-request/>."""
    w = world()
    a = w.login("alice@example.test/phone")
    reply = w.iq(a, "get", f"<credentials xmlns='{EXTDISCO}'><service host='turn.example.test' type='turns'/>"
                           "</credentials>", to="example.test")
    assert payload(reply).name == "credentials"
    (got,) = services(reply)
    assert got["type"] == "turns" and got["port"] == "5349" and got["username"].endswith(":alice@example.test")
    missing = w.iq(a, "get", f"<credentials xmlns='{EXTDISCO}'><service host='turn.example.test' type='turn' "
                             "port='9'/></credentials>", to="example.test", id="q2")
    assert condition(missing) == "item-not-found"
    empty = w.iq(a, "get", f"<credentials xmlns='{EXTDISCO}'/>", to="example.test", id="q3")
    assert condition(empty) == "bad-request"


def test_only_the_domains_own_users_are_served():
    """A user of another hosted domain asking this one gets <forbidden/> and no
    credentials (a remote user's or a component's address is not a local user's either)."""
    w = world()
    other = w.login("oscar@other.test/a")
    reply = w.iq(other, "get", f"<services xmlns='{EXTDISCO}'/>", to="example.test")
    assert condition(reply) == "forbidden"
    reply = w.iq(other, "get", f"<credentials xmlns='{EXTDISCO}'><service host='turn.example.test' type='turn'/>"
                               "</credentials>", to="example.test", id="q2")
    assert condition(reply) == "forbidden"


def test_feature_advertised_only_when_services_are_configured():
    assert EXTDISCO in world().ctx.disco.server_features
    w = World()
    assert EXTDISCO not in w.ctx.disco.server_features
    a = w.login("alice@example.test/phone")
    assert condition(w.iq(a, "get", f"<services xmlns='{EXTDISCO}'/>", to="example.test")) == "service-unavailable"


# -- configuration ------------------------------------------------------------------------


def load(tmp_path, text: str) -> config.Config:
    path = tmp_path / "fedxmpp.toml"
    path.write_text(text)
    return config.load(path)


def test_config_reads_services_and_a_secret_file(tmp_path):
    (tmp_path / "turn.secret").write_text("from-a-file\n")
    cfg = load(tmp_path, "[external_services]\nsecret_file = 'turn.secret'\ncredential_lifetime = 3600\n"
                         "[[external_services.service]]\ntype = 'turn'\nhost = '127.0.0.1'\nport = 3478\n")
    assert cfg.external_services.secret == "from-a-file"
    assert cfg.external_services.service == (ExternalServiceConfig(type="turn", host="127.0.0.1", port=3478),)
    assert "from-a-file" not in repr(cfg)


@pytest.mark.parametrize("text,problem", [
    ("[[external_services.service]]\ntype = 'turn'\nhost = 'h'\n", "external_services.secret: is required"),
    ("[[external_services.service]]\ntype = 'relay'\nhost = 'h'\n", "external_services.service[0].type: must be"),
    ("[[external_services.service]]\ntype = 'stun'\n", "external_services.service[0].host: is required"),
    ("[[external_services.service]]\ntype = 'stun'\nhost = 'h'\nport = 70000\n", "service[0].port: must be"),
    ("[[external_services.service]]\ntype = 'stun'\nhost = 'h'\ntransport = 'sctp'\n",
     "service[0].transport: must be"),
    ("[external_services]\ncredential_lifetime = 4\n", "external_services.credential_lifetime: must be"),
    ("[external_services]\nsecret = 'a'\nsecret_file = 'b'\n", "external_services.secret: give secret or"),
])
def test_config_errors_name_the_key(tmp_path, text, problem):
    with pytest.raises(config.ConfigError) as err:
        load(tmp_path, text)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_sample_external_services_load_once_uncommented(tmp_path):
    """The commented examples of [external_services] in etc/fedxmpp.toml are a valid
    configuration once uncommented."""
    import re
    from pathlib import Path
    sample = (Path(__file__).resolve().parents[3] / "etc" / "fedxmpp.toml").read_text()
    head, section = sample.split("\n[external_services]\n", 1)
    section = re.sub(r"^#(?=\[\[external_services|type =|host =|port =|transport =)", "", section, flags=re.M)
    section = re.sub(r"^# (?=secret = )", "", section, flags=re.M)
    section = re.split(r"\n\[(?!\[)", section, maxsplit=1)[0]
    cfg = load(tmp_path, "[external_services]\n" + section)
    assert [(s.type, s.port) for s in cfg.external_services.service] == [("stun", 0), ("turn", 3478)]
    assert cfg.external_services.secret
