"""XEP-0092: Software Version of the server: name, version and, if the operator
allows it (``[features] version_os``), the operating system."""

from __future__ import annotations

import platform

from twisted.words.xish import domish

import fedxmpp
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent

VERSION = "jabber:iq:version"
NAME = "fedxmpp"


def register(hooks: Hooks, ctx: ServerContext) -> None:
    ctx.disco.server_features.add(VERSION)
    os_name = f"{platform.system()} {platform.release()}".strip() if ctx.config.features.version_os else None

    def version(event: StanzaEvent) -> bool:
        query = domish.Element((VERSION, "query"))
        query.addElement("name", content=NAME)
        query.addElement("version", content=fedxmpp.__version__)
        if os_name:
            query.addElement("os", content=os_name)
        event.reply(query)
        return True

    hooks.add(f"iq-get/host/{VERSION}", version)
