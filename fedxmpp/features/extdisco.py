"""XEP-0215: External Service Discovery of the STUN and TURN servers configured in
``[external_services]``, for the audio/video calls (Jingle) of the server's own users.

TURN servers get time-limited credentials from a secret shared with them, the
"TURN REST API" scheme (coturn's ``use-auth-secret`` / ``static-auth-secret``):
the username is ``<expiry unix time>:<user's bare JID>`` and the password
base64(HMAC-SHA1(secret, username)).  The TURN server checks the HMAC and the
expiry itself, so nothing is stored here and nothing needs revoking.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.words.xish import domish

from fedxmpp.config import ExternalServiceConfig
from fedxmpp.features._shared import child, is_local_user
from fedxmpp.features.time import utc_stamp
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext
from fedxmpp.im.delivery import StanzaEvent

EXTDISCO = "urn:xmpp:extdisco:2"

STANDARD_PORTS = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """(username, password) that a TURN server sharing *secret* accepts until *expires*."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def port_of(service: ExternalServiceConfig) -> int:
    return service.port or STANDARD_PORTS[service.type]


def register(hooks: Hooks, ctx: ServerContext) -> None:
    settings = ctx.config.external_services
    if not settings.service:
        return
    ctx.disco.server_features.add(EXTDISCO)

    def describe(service: ExternalServiceConfig, user: str) -> domish.Element:
        el = domish.Element((EXTDISCO, "service"))
        el["type"] = service.type
        el["host"] = service.host
        el["port"] = str(port_of(service))
        el["transport"] = service.transport
        if service.name:
            el["name"] = service.name
        if service.type.startswith("turn"):
            expires = int(ctx.clock.seconds()) + settings.credential_lifetime
            el["restricted"] = "1"
            el["username"], el["password"] = turn_credentials(settings.secret, user, expires)
            el["expires"] = utc_stamp(expires)
        return el

    def allowed(event: StanzaEvent) -> bool:
        """Only the domain's own users: the TURN server relays at the operator's cost."""
        if is_local_user(ctx, event.frm) and event.frm.host == event.to.host:
            return True
        event.error("forbidden")
        return False

    def services(event: StanzaEvent) -> bool:
        request = event.payload()
        if request is None or request.name != "services":
            event.error("bad-request")
            return True
        if not allowed(event):
            return True
        wanted = request.getAttribute("type")
        answer = domish.Element((EXTDISCO, "services"))
        if wanted:
            answer["type"] = wanted
        user = event.frm.bare.full()
        for service in settings.service:
            if not wanted or service.type == wanted:
                answer.addChild(describe(service, user))
        event.reply(answer)
        return True

    def credentials(event: StanzaEvent) -> bool:
        request = event.payload()
        if request is None or request.name != "credentials":
            return False
        if not allowed(event):
            return True
        asked = child(request, EXTDISCO, "service")
        if asked is None or not asked.getAttribute("host") or not asked.getAttribute("type"):
            event.error("bad-request", "name the service by host and type")
            return True
        port = asked.getAttribute("port")
        answer = domish.Element((EXTDISCO, "credentials"))
        for service in settings.service:
            if (service.host == asked["host"] and service.type == asked["type"]
                    and (not port or port == str(port_of(service)))):
                answer.addChild(describe(service, event.frm.bare.full()))
                event.reply(answer)
                return True
        event.error("item-not-found")
        return True

    # credentials first: both requests are iq-get in the same namespace.
    hooks.add(f"iq-get/host/{EXTDISCO}", credentials, 10)
    hooks.add(f"iq-get/host/{EXTDISCO}", services)
