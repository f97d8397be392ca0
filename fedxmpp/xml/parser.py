"""The restricted, bounded XML stream parser (RFC 6120 §4.9.3, §11).

One :class:`StreamParser` reads one XML stream: it reports the stream header, every
complete first-level child (stanza or nonza) and the closing tag, and turns anything an
XMPP peer may not send into a :class:`~fedxmpp.xml.errors.StreamError`:

=================================================  ======================
DOCTYPE, entity declarations, comments, PIs        ``restricted-xml``
an XML declaration naming another encoding         ``unsupported-encoding``
anything expat rejects (undefined entity, invalid  ``not-well-formed``
UTF-8, unbound prefix — RFC 6120 §4.9.3.13 covers
violations of XML *and* XML-NAMES)
a stanza of more than ``max_stanza_size`` bytes,   ``policy-violation``
elements nested deeper than ``max_depth``
non-whitespace text directly inside the root       ``bad-format``
=================================================  ======================

Depth counts the stream root as 0, so a stanza is at depth 1 and ``max_depth=1``
allows only childless stanzas.  Stanza size counts the bytes from the ``<`` of its
start tag to the ``>`` of its end tag; the stream header (with the XML declaration in
front of it) is held to the same limit, and whitespace between stanzas counts toward
nothing.

Bounded work and memory
-----------------------
The bundled expat (2.5) has no reparse deferral: a token that arrives in small pieces
is rescanned from its start on every ``Parse`` call, which is quadratic.  The parser
therefore keeps what expat could not finish in view:

* After every ``Parse`` call ``CurrentByteIndex`` is "just past the last parse event",
  so ``fed - CurrentByteIndex`` is the unfinished token expat holds.
* New bytes are handed to expat only when they may finish the held token (they hold
  a ``>`` — for a start tag one outside quotes, found by scanning only the *new*
  bytes) or when they are at least as long as both the held token and :data:`CHUNK`.
  Expat rescans a held token only when it is finished or has doubled, so its total
  work stays linear in the input.  No stanza or stream event is ever delayed, since
  none can happen without a ``>``; some errors may be noticed a read later.
* Before expat sees a byte of a stanza, the stanza's size so far is known exactly;
  pieces are cut so that expat never holds more than ``max_stanza_size`` bytes of one
  stanza, and bytes waiting in front of expat stay below ``max(CHUNK, held token)``.
  One stream costs about ``max_stanza_size + CHUNK`` bytes of buffers at most.

Text is collected in lists and joined once per element, so huge text nodes cost
linear time too (``domish.Element.addContent`` would copy on every callback).

Errors and the end of the stream make the parser dead: later :meth:`StreamParser.feed`
calls return without doing anything, so a transport may keep delivering bytes while
the stream is being closed.  An exception raised by a callback propagates out of
``feed`` and also leaves the parser dead.
"""

from __future__ import annotations

import re
from typing import Callable

import pyexpat
from twisted.words.xish import domish

from fedxmpp.xml.errors import StreamError

__all__ = ["CHUNK", "StreamParser"]

#: Bytes that may wait in front of expat when they cannot finish anything yet.
CHUNK = 16 * 1024

# What expat holds unfinished after a Parse call (see _classify).
_NONE = 0  # nothing: the last event ended exactly where the input did
_ANY = 1  # a few bytes of a short token ('\r', half a UTF-8 sequence, ']]', '<![CDATA[')
_HEAD = 2  # too few bytes to tell yet ('<', '<!-', '<?xm'): kept in _head
_STAG = 3  # a start tag or empty-element tag: ends at a '>' outside quotes
_ETAG = 4  # an end tag: ends at '>'
_DECL = 5  # the XML declaration: ends at '>'
_REF = 6  # an entity or character reference: ends at any non-name byte

# Bytes that end, or make expat reject, the held token of each kind.
_STAG_STOP = re.compile(rb"[<>'\"]")
_TAG_STOP = re.compile(rb"[<>]")
_REF_STOP = re.compile(rb"[^0-9A-Za-z#._:\-\x80-\xff]")
_NAME_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:") | frozenset(range(0x80, 0x100))
_XML_SPACE = " \t\r\n"
_XML_SPACE_BYTES = b" \t\r\n"
# Encodings expat would be told to read as UTF-8 although they are not.
_FOREIGN_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00<", b"<\x00")
_UTF8_BOM = b"\xef\xbb\xbf"
# Bytes at the start of a stream judged by _cannot_open_stream.
_SNIFF = 64
_BOMS = (_UTF8_BOM, *_FOREIGN_BOMS)


def _parse_nothing(data: object, isfinal: bool = False) -> int:
    return 1


def _cannot_open_stream(first: bytes | bytearray) -> bool:
    """True when the first bytes of a stream already show it is not XML: a TLS
    ClientHello sent to the STARTTLS port, an HTTP request.  A document begins with
    an optional byte order mark and whitespace, then '<' (XML 1.0 §2.1, §4.3.3);
    expat itself may wait for more bytes before refusing e.g. ``SSH-2.0``.  Only
    the first :data:`_SNIFF` bytes are looked at, so that a peer dripping spaces
    costs constant work per read (after that many spaces, expat decides)."""
    first = first[:_SNIFF]
    if any(len(first) < len(bom) and bom.startswith(first) for bom in _BOMS):
        return False  # too early to tell
    rest = first.removeprefix(_UTF8_BOM).lstrip(_XML_SPACE_BYTES)
    return bool(rest) and not rest.startswith(b"<")


class _Stop(Exception):
    """Raised inside an expat handler to end parsing without an error."""


class StreamParser:
    """Parse one XMPP stream from bytes into ``domish.Element`` objects.

    *on_stream_start* gets the root element: its ``uri``/``name`` as sent (not
    validated here), ``defaultUri`` the default namespace declared on it or None,
    plain attribute keys (``'to'``, ``'version'``...) and ``(ns.XML, 'lang')`` for
    ``xml:lang``.  *on_element* gets each complete first-level child, built the way
    ``domish.ExpatElementStream`` builds it: children inherit the default namespace
    (``uri`` and ``defaultUri``), prefixed attributes are ``(uri, name)`` keys.
    *on_stream_end* is called once for ``</stream:stream>``; anything after it is
    ignored.  Create a new parser for every stream (and stream restart).

    A callback may call :meth:`stop` to have nothing after the current element
    parsed; it must not call :meth:`feed` (the parser is not re-entrant).
    """

    __slots__ = (
        "_on_stream_start", "_on_element", "_on_stream_end", "_max_size", "_max_depth",
        "_expat", "_parse", "_dead", "_depth", "_cur", "_text", "_stream_default", "_default", "_prefixes",
        "_pending", "_fed", "_mark", "_held", "_kind", "_head", "_quote", "_tok_start", "_scan_end",
    )

    def __init__(
        self,
        *,
        on_stream_start: Callable[[domish.Element], None],
        on_element: Callable[[domish.Element], None],
        on_stream_end: Callable[[], None],
        max_stanza_size: int,
        max_depth: int,
    ) -> None:
        if max_stanza_size < 1 or max_depth < 1:
            raise ValueError("max_stanza_size and max_depth must be positive")
        self._on_stream_start = on_stream_start
        self._on_element = on_element
        self._on_stream_end = on_stream_end
        self._max_size = max_stanza_size
        self._max_depth = max_depth

        p = pyexpat.ParserCreate("UTF-8", " ")
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_start
        p.XmlDeclHandler = self._xml_decl
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity_decl
        p.ProcessingInstructionHandler = self._pi
        p.CommentHandler = self._comment
        self._expat: pyexpat.XMLParserType | None = p
        self._parse = p.Parse
        self._dead = False

        # Tree building.
        self._depth = 0  # open elements, the root included
        self._cur: domish.Element | None = None
        self._text: list[str] = []
        self._stream_default = ""  # children of the root inherit this, as in domish
        self._default: str | None = None  # a default namespace declared on the next element
        self._prefixes: dict[str, str] | None = None

        # Input accounting; offsets count every byte handed to expat.
        self._pending = bytearray()  # received, not yet handed to expat
        self._fed = 0
        self._mark = 0  # where the stanza (or the stanza-to-be) began
        self._held = 0  # bytes of an unfinished token expat holds
        self._kind = _NONE
        self._head = b""  # the whole held token while it is _HEAD
        self._quote = 0  # inside a _STAG: the open quote byte, or 0
        self._tok_start = -1
        self._scan_end = 0  # offset up to which the held token has been scanned

    # -- public -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse *data*, calling back for what it completes.

        Raises :class:`StreamError` (after which the parser is dead).
        """
        if self._dead or not data:
            return
        try:
            pending = self._pending
            kind = self._kind
            if kind <= _HEAD:
                if not pending and b">" in data:
                    self._push(data)  # the usual case: whole stanzas
                    return
                pending += data
                if (b">" not in data and len(pending) < max(CHUNK, self._held)
                        and not (self._fed == 0 and _cannot_open_stream(pending))):
                    return
            else:
                pending += data
                if not self._scan(data, 0):
                    self._scan_end = self._fed + len(pending)
                    stanza_so_far = self._fed - self._mark + len(pending)
                    if len(pending) < max(CHUNK, self._held) and stanza_so_far < self._max_size:
                        return
            data = bytes(pending)
            pending.clear()
            self._push(data)
        except _Stop:
            self._die()
        except StreamError:
            self._die()
            raise
        except pyexpat.ExpatError as e:
            self._die()
            raise StreamError("not-well-formed", str(e)) from None
        except BaseException:
            self._die()
            raise

    @property
    def between_elements(self) -> bool:
        """Whether everything fed so far is parsed into complete first-level
        elements: no element is open and no markup waits to be finished (what
        a message-framed transport checks at the end of each message)."""
        return self._depth == 1 and not self._pending and self._kind <= _ANY

    def stop(self) -> None:
        """Parse nothing more: whatever has not been parsed yet is discarded.

        Safe to call from a callback — e.g. on ``<starttls/>``, so that no byte sent
        after it in the clear is ever read as part of the stream.
        """
        self._die()

    # -- input --------------------------------------------------------------------

    def _push(self, data: bytes) -> None:
        """Hand *data* to expat in pieces no stanza can overflow unnoticed."""
        if self._fed == 0:
            if data.startswith(_FOREIGN_BOMS):
                raise StreamError("unsupported-encoding", "XMPP streams are UTF-8 (RFC 6120 §11.6)")
            if _cannot_open_stream(data):
                raise StreamError("not-well-formed", "this is not an XML stream")
        n = len(data)
        pos = 0
        while pos < n:
            room = self._max_size - (self._fed - self._mark)
            if room <= 0:
                raise self._too_big()
            piece = data[pos:pos + room] if pos or n > room else data
            base = self._fed
            self._fed = base + len(piece)
            self._parse(piece)
            if self._dead:
                raise _Stop()
            self._after_parse(piece, base)
            pos += len(piece)

    def _after_parse(self, piece: bytes, base: int) -> None:
        """Account for what expat left unfinished at the end of *piece*."""
        assert self._expat is not None
        if self._depth == 0 and b"<!" in piece:
            # Still before the root: a DOCTYPE or comment expat has not finished (a
            # finished one has already been refused by its handler).
            raise StreamError("restricted-xml", "DOCTYPE and comments are not allowed")
        fed = self._fed
        idx = max(self._expat.CurrentByteIndex, 0)
        if self._depth < 2:
            self._mark = idx  # between stanzas only an unfinished tag counts
        if fed - self._mark >= self._max_size:
            raise self._too_big()
        held = self._held = fed - idx
        if not held:
            self._kind = _NONE
            self._tok_start = -1
            self._scan_end = fed
        elif idx != self._tok_start:
            self._tok_start = idx
            start = idx - base
            if start < 0:  # cannot happen: a token that began before this piece is the old one
                self._kind = _ANY
            else:
                self._classify(piece[start:] if start else piece)
            self._scan_end = fed
        elif self._kind == _HEAD:  # the same token, now long enough to tell what it is
            self._classify(self._head + piece)
            self._scan_end = fed
        elif self._scan_end < fed:  # the same token, grown by bytes not scanned on arrival
            if self._kind > _HEAD:
                self._scan(piece, self._scan_end - base)
            self._scan_end = fed

    def _classify(self, token: bytes) -> None:
        """Name the unfinished token expat holds (*token*, from its first byte) and
        scan it, or refuse it if it is markup XMPP does not allow."""
        head = token[:6]
        first = head[0]
        second = head[1] if len(head) > 1 else -1
        self._quote = 0
        if first == 0x26:  # '&'
            self._kind = _REF
            self._scan(token, 1)
        elif first != 0x3C:
            self._kind = _ANY
        elif second < 0 or (second in b"!?" and len(head) < (4 if second == 0x21 else 6)):
            self._kind = _HEAD
            self._head = bytes(token)
            if second == 0x21 and head[2:3] not in (b"", b"-"):
                self._classify_declaration(head)
        elif second in _NAME_START:
            self._kind = _STAG
            self._scan(token, 1)
        elif second == 0x2F:  # '</'
            self._kind = _ETAG
            self._scan(token, 2)
        elif second == 0x21:  # '<!'
            self._classify_declaration(head)
        elif second == 0x3F:  # '<?'
            if head[2:5] == b"xml" and head[5] in b" \t\r\n":
                self._kind = _DECL
                self._scan(token, 6)
            else:
                raise StreamError("restricted-xml", "processing instructions are not allowed")
        else:
            self._kind = _ANY  # expat has already refused anything else

    def _classify_declaration(self, head: bytes) -> None:
        if head.startswith(b"<!--"):
            raise StreamError("restricted-xml", "comments are not allowed")
        if self._depth == 0:
            raise StreamError("restricted-xml", "document type declarations are not allowed")
        self._kind = _ANY  # '<![CDATA[' is short; expat refuses any other '<!' in content

    def _scan(self, data: bytes, pos: int) -> bool:
        """Scan *data[pos:]*, the continuation of the held token.

        True if it holds a byte that may finish the token (the parser then hands it
        to expat; the token's state beyond that byte is unknown, hence ``_ANY``).
        """
        kind = self._kind
        if kind == _STAG:
            quote = self._quote
            while True:
                if quote:
                    pos = data.find(quote, pos)
                    if pos < 0:
                        self._quote = quote
                        return False
                    quote = 0
                    pos += 1
                else:
                    m = _STAG_STOP.search(data, pos)
                    if m is None:
                        self._quote = 0
                        return False
                    pos = m.start()
                    quote = data[pos]
                    if quote == 0x3C or quote == 0x3E:  # '<' or '>'
                        break
                    pos += 1
        elif kind == _ETAG or kind == _DECL:
            if _TAG_STOP.search(data, pos) is None:
                return False
        elif kind == _REF:
            if _REF_STOP.search(data, pos) is None:
                return False
        self._kind = _ANY
        return True

    def _too_big(self) -> StreamError:
        return StreamError("policy-violation", f"stanza larger than {self._max_size} bytes")

    def _die(self) -> None:
        self._dead = True
        self._expat = None
        self._parse = _parse_nothing
        self._cur = None
        self._pending = bytearray()
        self._text = []

    # -- expat handlers -----------------------------------------------------------

    def _start(self, name: str, attrs: dict) -> None:
        depth = self._depth
        if depth > self._max_depth:
            raise StreamError("policy-violation", f"elements nested deeper than {self._max_depth} levels")
        uri, _, local = name.rpartition(" ")
        if attrs:
            for key in [k for k in attrs if " " in k]:
                auri, _, aname = key.rpartition(" ")
                attrs[(auri, aname)] = attrs.pop(key)
        prefixes = self._prefixes
        if prefixes is not None:
            self._prefixes = None
        default = self._default
        if default is not None:
            self._default = None
        if depth >= 2:
            cur = self._cur
            assert cur is not None
            if self._text:
                self._flush_text(cur)
            el = domish.Element((uri, local), cur.defaultUri if default is None else default, attrs, prefixes)
            el.parent = cur
            cur.children.append(el)
            self._cur = el
            self._depth = depth + 1
        elif depth == 1:
            assert self._expat is not None
            self._mark = self._expat.CurrentByteIndex
            self._cur = domish.Element(
                (uri, local), self._stream_default if default is None else default, attrs, prefixes)
            self._depth = 2
        else:
            root = domish.Element((uri, local), None, attrs, prefixes)
            root.defaultUri = default
            if default is not None:
                self._stream_default = default
            self._depth = 1
            self._on_stream_start(root)
            if self._dead:
                raise _Stop()

    def _end(self, name: str) -> None:
        depth = self._depth = self._depth - 1
        if depth == 0:
            self._on_stream_end()
            raise _Stop()
        el = self._cur
        assert el is not None
        if self._text:
            self._flush_text(el)
        if depth == 1:
            self._cur = None
            self._on_element(el)
            if self._dead:
                raise _Stop()
        else:
            self._cur = el.parent

    def _flush_text(self, el: domish.Element) -> None:
        text = self._text
        el.children.append(text[0] if len(text) == 1 else "".join(text))
        text.clear()

    def _chars(self, data: str) -> None:
        if self._depth > 1:
            self._text.append(data)
        elif data.strip(_XML_SPACE):
            raise StreamError("bad-format", "text is not allowed between stanzas")

    def _ns_start(self, prefix: str | None, uri: str | None) -> None:
        # Expat reports an element's declarations just before the element itself.
        if prefix is None:
            self._default = uri or ""
        elif self._prefixes is None:
            self._prefixes = {prefix: uri or ""}
        else:
            self._prefixes[prefix] = uri or ""

    def _xml_decl(self, version: str, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower() != "utf-8":
            raise StreamError("unsupported-encoding", f"encoding {encoding!r}: XMPP streams are UTF-8")

    def _doctype(self, *args: object) -> None:
        raise StreamError("restricted-xml", "document type declarations are not allowed")

    def _entity_decl(self, *args: object) -> None:
        raise StreamError("restricted-xml", "entity declarations are not allowed")

    def _pi(self, target: str, data: str) -> None:
        raise StreamError("restricted-xml", "processing instructions are not allowed")

    def _comment(self, data: str) -> None:
        raise StreamError("restricted-xml", "comments are not allowed")


def parse_stanza(text: str, max_size: int, max_depth: int) -> domish.Element | None:
    """One stanza serialised for a ``jabber:client`` stream (as storage keeps
    them), parsed back with this restricted parser; None if it is not one."""
    found: list[domish.Element] = []
    parser = StreamParser(on_stream_start=lambda root: None, on_element=found.append,
                          on_stream_end=lambda: None, max_stanza_size=max_size, max_depth=max_depth)
    try:
        parser.feed(f"<stream xmlns='jabber:client'>{text}</stream>".encode("utf-8"))
    except StreamError:
        return None
    return found[0] if len(found) == 1 else None
