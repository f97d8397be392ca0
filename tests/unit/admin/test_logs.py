"""``[log] level`` and ``format``: the filter put in front of twistd's observer."""

from __future__ import annotations

import io
import json

import pytest
from twisted.logger import LogLevel, LogPublisher, Logger, textFileLogObserver

from fedxmpp import config
from fedxmpp.admin.logs import LogLevels, install


def publisher_with_text_file() -> tuple[LogPublisher, io.StringIO]:
    out = io.StringIO()
    publisher = LogPublisher()
    publisher.addObserver(textFileLogObserver(out))
    return publisher, out


def test_the_level_drops_what_is_below_it_and_can_change():
    """At "warn", info and debug are dropped; set to "debug", everything shows."""
    publisher, out = publisher_with_text_file()
    levels = LogLevels("warn")
    assert install(levels, "text", publisher) == 1
    log = Logger(namespace="fedxmpp.test", observer=publisher)
    log.debug("a debug line")
    log.info("an info line")
    log.warn("a warning line")
    assert "a warning line" in out.getvalue() and "info line" not in out.getvalue()
    levels.set_level("debug")
    log.debug("another debug line")
    assert "another debug line" in out.getvalue()


def test_installing_twice_wraps_once():
    publisher, out = publisher_with_text_file()
    levels = LogLevels("info")
    install(levels, "text", publisher)
    install(levels, "text", publisher)
    Logger(observer=publisher).info("once")
    assert out.getvalue().count("once") == 1


def test_dns_chatter_is_kept_out_unless_debug():
    """The port opened and closed for each DNS query is not logged at info."""
    publisher, out = publisher_with_text_file()
    levels = LogLevels("info")
    install(levels, "text", publisher)
    for text in ("DNSDatagramProtocol starting on 40123", "(UDP Port 40123 Closed)"):
        publisher({"message": (text,), "log_level": LogLevel.info, "log_format": "{log_text}", "log_text": text,
                   "isError": 0, "log_namespace": "log_legacy", "log_time": 0.0})
    Logger(observer=publisher).info("a real line")
    assert "UDP Port" not in out.getvalue() and "DNSDatagramProtocol" not in out.getvalue()
    assert "a real line" in out.getvalue()


def test_json_format_writes_one_object_per_line():
    publisher, out = publisher_with_text_file()
    install(LogLevels("info"), "json", publisher)
    Logger(namespace="fedxmpp.test", observer=publisher).info("Authenticated {user}", user="ann@example.test")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1 and lines[0]["user"] == "ann@example.test"
    assert lines[0]["log_namespace"] == "fedxmpp.test" and lines[0]["log_level"]["name"] == "info"


@pytest.mark.parametrize("section, problem", [
    ('[log]\nlevel = "verbose"\n', "log.level: must be one of 'debug', 'info', 'warn', 'error'"),
    ('[log]\nformat = "xml"\n', "log.format: must be 'text' or 'json'"),
])
def test_bad_log_settings_are_one_line(tmp_path, section, problem):
    path = tmp_path / "fedxmpp.toml"
    path.write_text('[server]\ndomains = ["example.test"]\n' + section)
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert problem in str(e.value) and "\n" not in str(e.value)
