"""Reading XEP-0227 files: the ``<user/>`` elements of a ``<server-data/>`` document, one at a time.

The document is read incrementally (ElementTree's pull parser, expat underneath,
built in C: 5,000 users with 50 contacts each take about half a second), so a
file of any number of users needs the memory of one user at a time.  Each
``<user/>`` comes out as an ElementTree element with the host it belongs to.

XInclude (XEP-0227 §5) is followed where the XEP requires it: an
``<xi:include href='...'/>`` with a relative reference, no ``parse`` other
than ``xml`` and no ``xpointer``, wherever it appears; the included file must
lie in the directory of the main file or below it, and includes nest at most
:data:`MAX_INCLUDE_DEPTH` deep.

Untrusted input: a DOCTYPE (and with it every entity declaration, internal or
external) is refused before the parser sees it, as are trees deeper than
:data:`MAX_DEPTH`.  A problem is a :class:`PieError`, one line naming the file
and the element.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PIE = "urn:xmpp:pie:0"
XINCLUDE = "http://www.w3.org/2001/XInclude"
MAX_DEPTH = 64
MAX_INCLUDE_DEPTH = 4
_CHUNK = 1 << 16
_SERVER_DATA = f"{{{PIE}}}server-data"
_HOST = f"{{{PIE}}}host"
_USER = f"{{{PIE}}}user"
_INCLUDE = f"{{{XINCLUDE}}}include"
# Only a DOCTYPE declares entities; "<!" is otherwise only a comment or CDATA.
_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY")


class PieError(Exception):
    """A file that cannot be imported; the message is one line naming the file."""


@dataclass(frozen=True)
class UserElement:
    host: str
    element: ET.Element
    #: The file it was read from, for messages.
    path: Path

    @property
    def where(self) -> str:
        return f"{self.path}: <user name='{self.element.get('name', '')}'> of <host jid='{self.host}'>"


def split(tag: str) -> tuple[str | None, str]:
    """ElementTree's ``{uri}name`` as (uri, name)."""
    if tag.startswith("{"):
        uri, _, name = tag[1:].partition("}")
        return uri, name
    return None, tag


def describe(element: ET.Element) -> str:
    """``<name xmlns='uri'>`` for messages."""
    uri, name = split(element.tag)
    return f"<{name} xmlns='{uri}'>" if uri else f"<{name}>"


def read_users(path: Path) -> Iterator[UserElement]:
    """Every ``<user/>`` of the document in *path*, in document order."""
    yield from _read(path, path.resolve().parent, expect=(_SERVER_DATA,), host=None, depth=0)


def _fail(path: Path, problem: str) -> PieError:
    return PieError(f"{path}: {problem}")


def _events(path: Path) -> Iterator[tuple[str, ET.Element]]:
    """(event, element) for 'start' and 'end', refusing DOCTYPE."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _fail(path, e.strerror or "cannot be read") from None
    tail = b""
    with f:
        while True:
            chunk = f.read(_CHUNK)
            window = (tail + chunk).upper()
            if any(word in window for word in _FORBIDDEN):
                raise _fail(path, "a DOCTYPE or entity declaration is not allowed")
            tail = chunk[-16:]
            try:
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
            except ET.ParseError as e:
                raise _fail(path, f"not well-formed XML ({e})") from None
            for event in parser.read_events():
                yield event  # type: ignore[misc]
            if not chunk:
                return


def _read(path: Path, base: Path, *, expect: tuple[str, ...], host: str | None,
          depth: int) -> Iterator[UserElement]:
    stack: list[ET.Element] = []
    # The kind of each open element above the users: server-data, host or other.
    for event, element in _events(path):
        if event == "start":
            stack.append(element)
            if len(stack) > MAX_DEPTH:
                raise _fail(path, f"elements nested deeper than {MAX_DEPTH}")
            if len(stack) == 1:
                if element.tag not in expect:
                    wanted = " or ".join(describe(ET.Element(t)) for t in expect)
                    raise _fail(path, f"the document is {describe(element)}, expected {wanted}")
                if element.tag == _HOST:
                    host = _host_of(path, element)
            elif element.tag == _HOST and stack[-2].tag == _SERVER_DATA:
                host = _host_of(path, element)
            continue
        stack.pop()
        parent = stack[-1] if stack else None
        if element.tag == _USER and (parent is None or parent.tag == _HOST):
            if host is None:
                raise _fail(path, "<user> outside a <host>")
            _resolve_includes(path, base, element, depth)
            yield UserElement(host, element, path)
            if parent is not None:
                parent.remove(element)  # one user at a time in memory
        elif element.tag == _INCLUDE and parent is not None and parent.tag in (_SERVER_DATA, _HOST):
            child = _HOST if parent.tag == _SERVER_DATA else _USER
            target = _included(path, base, element, depth)
            yield from _read(target, base, expect=(child,), host=host, depth=depth + 1)
            parent.remove(element)
        elif parent is not None and parent.tag == _SERVER_DATA:
            if element.tag == _USER:
                raise _fail(path, "<user> outside a <host>")
            parent.remove(element)  # a finished host, or something unknown: done with it


def _host_of(path: Path, element: ET.Element) -> str:
    host = element.get("jid")
    if not host:
        raise _fail(path, "<host> has no 'jid' attribute")
    return host


def _included(path: Path, base: Path, element: ET.Element, depth: int) -> Path:
    href = element.get("href")
    if not href:
        raise _fail(path, "<xi:include> has no 'href'")
    if element.get("parse", "xml") != "xml" or element.get("xpointer") is not None:
        raise _fail(path, f"<xi:include href='{href}'>: only parse='xml' without xpointer is supported")
    if "://" in href or href.startswith("/"):
        raise _fail(path, f"<xi:include href='{href}'>: only relative references are supported")
    if depth >= MAX_INCLUDE_DEPTH:
        raise _fail(path, f"<xi:include href='{href}'>: includes nested deeper than {MAX_INCLUDE_DEPTH}")
    target = (path.parent / urllib.parse.unquote(href)).resolve()
    if not target.is_relative_to(base):
        raise _fail(path, f"<xi:include href='{href}'>: outside the directory of the main file")
    return target


def _resolve_includes(path: Path, base: Path, user: ET.Element, depth: int) -> None:
    """Replace each ``<xi:include/>`` inside a user's data by the root of its file."""
    todo = [user]
    while todo:
        parent = todo.pop()
        for i, child in enumerate(list(parent)):
            if child.tag == _INCLUDE:
                target = _included(path, base, child, depth)
                parent[i] = _whole(target, base, depth + 1)
            else:
                todo.append(child)


def _whole(path: Path, base: Path, depth: int) -> ET.Element:
    root: ET.Element | None = None
    open_elements = 0
    for event, element in _events(path):
        if event == "start":
            open_elements += 1
            if open_elements > MAX_DEPTH:
                raise _fail(path, f"elements nested deeper than {MAX_DEPTH}")
            if root is None:
                root = element
        else:
            open_elements -= 1
    if root is None:
        raise _fail(path, "no element")
    _resolve_includes(path, base, root, depth)
    return root
