"""``twistd fedxmpp``: options and service construction."""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from fedxmpp import app, config


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = "Run the fedxmpp XMPP server.  Without --config it serves 'localhost' on embedded defaults."
    optParameters = [
        ["config", "c", None, "TOML configuration file (see etc/fedxmpp.toml)"],
    ]


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from fedxmpp.admin.logs import install as install_log_filter
    from fedxmpp.admin.reload import install_sighup
    from fedxmpp.tls import TLSSetupError

    try:
        cfg = config.load(options["config"])
        server = app.build(cfg, reactor)
    except (config.ConfigError, TLSSetupError, app.StartupError) as e:
        sys.stderr.write(f"fedxmpp: {e}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None
    # SIGHUP reloads; installed once the reactor (and its own handlers) runs.
    reactor.callWhenRunning(install_sighup, reactor, server)
    # twistd's log observer exists once the reactor runs: [log] level and format apply from then on.
    reactor.callWhenRunning(install_log_filter, server.log_levels, cfg.log.format)
    return server
