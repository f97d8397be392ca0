"""Server dialback (XEP-0220): keys per XEP-0185 and the ``db:`` elements.

A key proves that the server which opened a stream is authoritative for the
domain it claims: only the domain's own servers know the secret it was made
with.  The secret is random per process and never leaves this object (not in
logs, not in ``repr``); a restart merely makes keys of streams opened before it
fail to verify, which the peer answers by dialling back again.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from twisted.words.xish import domish

from fedxmpp.xml import ns

NS_DIALBACK = "jabber:server:dialback"
NS_FEATURE = "urn:xmpp:features:dialback"

# Longest key accepted from the network: hex SHA-256 is 64; other servers' keys are
# similar.  Anything longer is refused without hashing it.
MAX_KEY = 1024


class DialbackKeys:
    """Makes and checks XEP-0185 keys with a per-process secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None = None) -> None:
        # XEP-0185 §3: the HMAC key is the SHA-256 of the secret, in hex as in the
        # XEP's examples (so the keys match XEP-0220's worked example).
        self._secret = hashlib.sha256(secret if secret is not None else os.urandom(32)).hexdigest().encode()

    def __repr__(self) -> str:
        return "<DialbackKeys>"

    def key(self, receiving: str, originating: str, stream_id: str) -> str:
        """The key our domain *originating* sends on the stream *stream_id* that the
        *receiving* server opened for us: HMAC-SHA256(SHA256(secret), 'R O ID'), hex."""
        message = f"{receiving} {originating} {stream_id}".encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def check(self, receiving: str, originating: str, stream_id: str, key: str) -> bool:
        """Whether *key* is the one we made for this stream (constant time)."""
        key = key.strip()
        if not key or len(key) > MAX_KEY:
            return False
        return hmac.compare_digest(self.key(receiving, originating, stream_id).encode(), key.encode("utf-8"))


def build(name: str, frm: str, to: str, *, key: str | None = None, type: str | None = None,
          id: str | None = None, error: str | None = None) -> str:
    """A ``<db:result/>`` or ``<db:verify/>`` as it goes on the wire, with the ``db``
    prefix (which some servers insist on; our stream headers declare it).  A
    dialback *error* (XEP-0220 §2.6) is an ``<error/>`` in the stream's namespace."""
    attrs = [("from", frm), ("to", to)]
    if id is not None:
        attrs.append(("id", id))
    if type is not None:
        attrs.append(("type", type))
    text = "".join(f" {k}='{domish.escapeToXml(v, isattrib=1)}'" for k, v in attrs)
    inner = domish.escapeToXml(key) if key else ""
    if error is not None:
        etype = "wait" if error == "remote-server-timeout" else "cancel"
        inner += f"<error type='{etype}'><{error} xmlns='{ns.STANZA_ERRORS}'/></error>"
    tag = f"db:{name}"
    return f"<{tag}{text}>{inner}</{tag}>" if inner else f"<{tag}{text}/>"


def error_condition(el: domish.Element) -> str | None:
    """The stanza error condition of a dialback ``type='error'`` element."""
    for child in el.elements():
        if child.name == "error":
            for cond in child.elements():
                if cond.uri == ns.STANZA_ERRORS and cond.name != "text":
                    return cond.name
            return "undefined-condition"
    return None
