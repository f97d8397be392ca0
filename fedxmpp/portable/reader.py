"""Reading XEP-0227 files: the ``<user/>`` elements of a ``<server-data/>`` document, one at a time.

The document is read incrementally with expat, so a file of any number of
users needs the memory of one user at a time.  Each ``<user/>`` comes out as a
domish tree with the host it belongs to.  XInclude (XEP-0227 §5) is followed
where the XEP requires it: an ``<xi:include href='...'/>`` with a relative
reference, no ``parse`` other than ``xml`` and no ``xpointer``, anywhere in the
tree; the included file must lie in the directory of the main file or below it,
and includes nest at most :data:`MAX_INCLUDE_DEPTH` deep.

Untrusted input: DOCTYPE (and with it every entity declaration) is refused, as
are trees deeper than :data:`MAX_DEPTH`.  A problem is a :class:`PieError`
naming the file, the line and the element.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from xml.parsers import expat

from twisted.words.xish import domish

PIE = "urn:xmpp:pie:0"
XINCLUDE = "http://www.w3.org/2001/XInclude"
MAX_DEPTH = 64
MAX_INCLUDE_DEPTH = 4
_CHUNK = 1 << 16


class PieError(Exception):
    """A file that cannot be imported; the message is one line: ``FILE:LINE: problem``."""


@dataclass(frozen=True)
class UserElement:
    host: str
    element: domish.Element
    #: Where the element starts, for messages: ``FILE:LINE``.
    where: str


def where(element: domish.Element) -> str:
    """``FILE:LINE`` of an element read by this module."""
    return str(element.__dict__.get("_pie_where", "?"))


def describe(element: domish.Element) -> str:
    """``<name xmlns='uri'>`` for messages."""
    return f"<{element.name} xmlns='{element.uri}'>" if element.uri else f"<{element.name}>"


def read_users(path: Path) -> Iterator[UserElement]:
    """Every ``<user/>`` of the document in *path*, in document order."""
    base = path.resolve().parent
    yield from _Reader(path, base, expect=("server-data",), host=None, depth=0).users()


class _Reader:
    """One file: its root is one of *expect* (``server-data``, ``host`` or ``user``)."""

    def __init__(self, path: Path, base: Path, *, expect: tuple[str, ...], host: str | None, depth: int) -> None:
        self.path = path
        self.base = base
        self.expect = expect
        self.include_depth = depth
        self.host = host
        self.parser = expat.ParserCreate(namespace_separator=" ")
        p = self.parser
        p.buffer_text = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        # (kind, element) for the outer levels: 'server-data', 'host'; None inside a user tree.
        self.outer: list[str] = []
        self.tree: list[domish.Element] = []
        self.ready: list[UserElement | tuple[Path, tuple[str, ...], str | None]] = []
        self.error: PieError | None = None

    # -- driving ----------------------------------------------------------------------------

    def users(self) -> Iterator[UserElement]:
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise PieError(f"{self.path}: {e.strerror}") from None
        with f:
            while True:
                chunk = f.read(_CHUNK)
                self._feed(chunk, final=not chunk)
                yield from self._drain()
                if not chunk:
                    break

    def _feed(self, data: bytes, *, final: bool) -> None:
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as e:
            if self.error is not None:
                raise self.error from None
            raise PieError(f"{self.path}:{e.lineno}: not well-formed XML ({expat.ErrorString(e.code)})") from None
        except PieError:
            raise
        if self.error is not None:
            raise self.error

    def _drain(self) -> Iterator[UserElement]:
        ready, self.ready = self.ready, []
        for entry in ready:
            if isinstance(entry, UserElement):
                yield entry
            else:
                path, expect, host = entry
                yield from _Reader(path, self.base, expect=expect, host=host,
                                   depth=self.include_depth + 1).users()

    def _fail(self, problem: str) -> None:
        error = PieError(f"{self.path}:{self.parser.CurrentLineNumber}: {problem}")
        self.error = error
        raise error

    # -- expat callbacks -------------------------------------------------------------------------

    def _doctype(self, *args: object) -> None:
        self._fail("a DOCTYPE is not allowed")

    def _entity(self, *args: object) -> None:
        self._fail("entity declarations are not allowed")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        uri, _, local = name.rpartition(" ")
        if self.tree or (not self.outer and self.expect == ("user",)) or (self.outer and self.outer[-1] == "host"):
            self._start_in_user(uri, local, attrs)
            return
        depth = len(self.outer)
        if uri == XINCLUDE and local == "include" and depth > 0:
            child = "host" if self.outer[-1] == "server-data" else "user"
            self.ready.append((self._included(attrs), (child,), self.host))
            self.outer.append("include")
            return
        if depth == 0:
            if uri != PIE or local not in self.expect:
                wanted = " or ".join(f"<{e} xmlns='{PIE}'>" for e in self.expect)
                self._fail(f"the document is <{local} xmlns='{uri}'>, expected {wanted}")
            if local == "host":
                self._set_host(attrs)
            self.outer.append(local)
            return
        if self.outer[-1] == "server-data" and uri == PIE and local == "host":
            self._set_host(attrs)
            self.outer.append("host")
            return
        # Something an exporting server added (XEP-0227 §4): not ours to read.
        self.outer.append("other")

    def _set_host(self, attrs: dict[str, str]) -> None:
        host = attrs.get("jid")
        if not host:
            self._fail("<host> has no 'jid' attribute")
        self.host = host

    def _start_in_user(self, uri: str, local: str, attrs: dict[str, str]) -> None:
        if not self.tree:
            if uri == XINCLUDE and local == "include":
                self.ready.append((self._included(attrs), ("user",), self.host))
                self.outer.append("include")
                return
            if uri != PIE or local != "user":
                if not self.outer:
                    self._fail(f"the document is <{local} xmlns='{uri}'>, expected <user xmlns='{PIE}'>")
                self.outer.append("other")
                return
        if len(self.tree) >= MAX_DEPTH:
            self._fail(f"elements nested deeper than {MAX_DEPTH}")
        if uri == XINCLUDE and local == "include" and self.tree:
            self.tree[-1].addChild(self._include_element(attrs))
            self.tree.append(domish.Element((XINCLUDE, "include")))  # popped by _end, not kept
            return
        element = domish.Element((uri or None, local))
        for key, value in attrs.items():
            a_uri, _, a_local = key.rpartition(" ")
            element[(a_uri, a_local) if a_uri else a_local] = value
        element.__dict__["_pie_where"] = f"{self.path}:{self.parser.CurrentLineNumber}"
        if self.tree:
            self.tree[-1].addChild(element)
        self.tree.append(element)

    def _end(self, name: str) -> None:
        if self.tree:
            element = self.tree.pop()
            if not self.tree and element.name == "user" and element.uri == PIE:
                if self.host is None:
                    self._fail("<user> outside a <host>")
                assert self.host is not None
                self.ready.append(UserElement(self.host, element, where(element)))
            return
        if self.outer:
            self.outer.pop()

    def _text(self, data: str) -> None:
        if self.tree:
            self.tree[-1].addContent(data)

    # -- XInclude ---------------------------------------------------------------------------------

    def _included(self, attrs: dict[str, str]) -> Path:
        href = attrs.get("href")
        if not href:
            self._fail("<xi:include> has no 'href'")
        assert href is not None
        if attrs.get("parse", "xml") != "xml" or "xpointer" in attrs:
            self._fail(f"<xi:include href='{href}'>: only parse='xml' without xpointer is supported")
        if "://" in href or href.startswith("/"):
            self._fail(f"<xi:include href='{href}'>: only relative references are supported")
        if self.include_depth >= MAX_INCLUDE_DEPTH:
            self._fail(f"<xi:include href='{href}'>: includes nested deeper than {MAX_INCLUDE_DEPTH}")
        target = (self.path.parent / urllib.parse.unquote(href)).resolve()
        if not target.is_relative_to(self.base):
            self._fail(f"<xi:include href='{href}'>: outside the directory of the main file")
        return target

    def _include_element(self, attrs: dict[str, str]) -> domish.Element:
        """The root element of an included file, read whole (inside a user's data)."""
        target = self._included(attrs)
        reader = _Reader(target, self.base, expect=(), host=self.host, depth=self.include_depth + 1)
        return reader.whole()

    def whole(self) -> domish.Element:
        # A file whose root is read as a tree whatever it is.
        got: list[domish.Element] = []
        self.expect = ("user",)
        self.tree = []

        def end(name: str) -> None:
            element = self.tree.pop()
            if not self.tree:
                got.append(element)

        def start(name: str, attrs: dict[str, str]) -> None:
            uri, _, local = name.rpartition(" ")
            if len(self.tree) >= MAX_DEPTH:
                self._fail(f"elements nested deeper than {MAX_DEPTH}")
            element = domish.Element((uri or None, local))
            for key, value in attrs.items():
                a_uri, _, a_local = key.rpartition(" ")
                element[(a_uri, a_local) if a_uri else a_local] = value
            element.__dict__["_pie_where"] = f"{self.path}:{self.parser.CurrentLineNumber}"
            if self.tree:
                self.tree[-1].addChild(element)
            self.tree.append(element)

        self.parser.StartElementHandler = start
        self.parser.EndElementHandler = end
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise PieError(f"{self.path}: {e.strerror}") from None
        self._feed(data, final=True)
        if not got:
            raise PieError(f"{self.path}: no element")
        return got[0]
