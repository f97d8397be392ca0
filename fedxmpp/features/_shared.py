"""Small helpers the feature modules share.  Not a feature: nothing here hooks anything.

* building and reading payload elements;
* running a handler's storage work as a coroutine whose failure is answered with
  ``<internal-server-error/>`` (never silence);
* keeping an element in a keyval document and reading it back through the
  restricted stream parser;
* RFC 6121 presence authorisation, which decides what the server may tell a
  contact on a user's behalf (disco, last activity, blocking).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Coroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.jid import JID
from fedxmpp.xml.parser import StreamParser
from fedxmpp.xml.serialize import serialize

if TYPE_CHECKING:
    from fedxmpp.im.context import ServerContext
    from fedxmpp.im.delivery import StanzaEvent

log = Logger()


def child(element: domish.Element, uri: str | None, name: str) -> domish.Element | None:
    """The first child element called *name* (in *uri*, unless None)."""
    for c in element.elements():
        if c.name == name and (uri is None or c.uri == uri):
            return c
    return None


def text_of(element: domish.Element | None) -> str:
    return "" if element is None else str(element)


def spawn(event: StanzaEvent, work: Coroutine[Any, Any, None], what: str) -> None:
    """Run *work* (which answers *event* itself); if it fails, log and answer
    ``<internal-server-error/>`` so the requester is never left waiting."""
    def failed(failure: Any) -> None:
        log.failure("{what} failed for {frm}", failure, what=what, frm=event.frm.full())
        event.error("internal-server-error")

    defer.Deferred.fromCoroutine(work).addErrback(failed)


def in_background(handler: Callable[[StanzaEvent], Coroutine[Any, Any, None]],
                  what: str) -> Callable[[StanzaEvent], bool]:
    """A hook handler that takes the event and answers it from the coroutine
    ``handler(event)``, run with :func:`spawn`."""
    def start(event: StanzaEvent) -> bool:
        spawn(event, handler(event), what)
        return True
    return start


def background(work: Coroutine[Any, Any, object], what: str) -> None:
    """Run *work* whose failure concerns nobody but the log."""
    defer.Deferred.fromCoroutine(work).addErrback(lambda f: log.failure("{what} failed", f, what=what))


# -- elements kept in keyval documents ---------------------------------------------------

# Element trees are stored as the XML our serializer writes, under a wrapper in this
# namespace, and read back with the same restricted parser that reads clients.
_WRAPPER_NS = "urn:fedxmpp:stored"
_STORED_DEPTH = 64


def element_to_bytes(element: domish.Element) -> bytes:
    return serialize(element, _WRAPPER_NS).encode("utf-8")


def element_from_bytes(data: bytes) -> domish.Element:
    """The element stored by :func:`element_to_bytes`; ValueError if *data* is not one."""
    got: list[domish.Element] = []
    parser = StreamParser(on_stream_start=lambda root: None, on_element=got.append, on_stream_end=lambda: None,
                          max_stanza_size=len(data) + 64, max_depth=_STORED_DEPTH)
    try:
        parser.feed(b"<s xmlns='" + _WRAPPER_NS.encode() + b"'>" + data + b"</s>")
    except StreamError as e:
        raise ValueError(f"stored XML is not readable: {e}") from None
    if len(got) != 1:
        raise ValueError("stored XML holds no single element")
    return got[0]


def size_of(element: domish.Element) -> int:
    """The element's size in bytes as it is stored."""
    return len(element_to_bytes(element))


# -- who may learn about a user --------------------------------------------------------------


def is_local_user(ctx: ServerContext, jid: JID) -> bool:
    return jid.user is not None and jid.host in ctx.router.hosted


async def may_see_presence(ctx: ServerContext, user: JID, requester: JID) -> bool:
    """Whether *requester* may receive *user*'s presence (RFC 6121 §4): the user
    themself, or a contact whose subscription to the user is 'from' or 'both' in
    the user's roster."""
    if requester.bare == user.bare:
        return True
    storage = ctx.storage
    if storage is None or user.user is None:
        return False
    item = await storage.roster.get_item(user.user, user.host, requester.bare.full())
    return item is not None and item.subscription in ("from", "both")

