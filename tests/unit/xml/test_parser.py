"""The restricted XML stream parser: what it builds, what it refuses, what it costs."""

from __future__ import annotations

from typing import Any

import pyexpat
import pytest
from twisted.words.xish import domish

from fedxmpp.xml import ns
from fedxmpp.xml import parser as parser_module
from fedxmpp.xml.errors import StreamError
from fedxmpp.xml.parser import CHUNK, StreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' from='juliet@example.com' "
          b"id='s1' version='1.0' xml:lang='en'>")
BARE_HEADER = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
MESSAGE = (b"<message to='romeo@example.net' type='chat' id='m1' xml:lang='de'>"
           b"<body>Hello &amp; &#x263A; \xe2\x98\x83 &lt;3</body>"
           b"<x xmlns='urn:example:x' xmlns:p='urn:example:p' p:attr='v'><y>text<z/>tail</y></x>"
           b"<![CDATA[<raw> & stuff]]></message>")
DOCUMENT = (HEADER + b"\n  " + MESSAGE + b"\r\n <presence/> \t"
            + b"<iq type='get' id='i1'><query xmlns='jabber:iq:roster'/></iq></stream:stream>")


class Recorder:
    """Collects what a parser reports."""

    def __init__(self) -> None:
        self.root: domish.Element | None = None
        self.elements: list[domish.Element] = []
        self.ended = 0

    def start(self, root: domish.Element) -> None:
        self.root = root

    def element(self, el: domish.Element) -> None:
        self.elements.append(el)

    def end(self) -> None:
        self.ended += 1


def make(max_stanza_size: int = 10000, max_depth: int = 16, **callbacks: Any) -> tuple[StreamParser, Recorder]:
    rec = Recorder()
    kwargs = dict(on_stream_start=rec.start, on_element=rec.element, on_stream_end=rec.end)
    kwargs.update(callbacks)
    return StreamParser(max_stanza_size=max_stanza_size, max_depth=max_depth, **kwargs), rec


def canon(node: object) -> object:
    """A comparable form of an element: namespace, name, attributes, children."""
    if isinstance(node, str):
        return node
    assert isinstance(node, domish.Element)
    return (node.uri, node.name, node.defaultUri, sorted(node.attributes.items(), key=repr),
            [canon(c) for c in node.children])


def feed_in(parser: StreamParser, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        parser.feed(data[i:i + size])


def error_of(data: bytes, size: int | None = None, **limits: Any) -> StreamError:
    parser, _ = make(**limits)
    with pytest.raises(StreamError) as info:
        feed_in(parser, data, size or len(data))
    return info.value


class CountingExpat:
    """Wraps the real expat parser and records what each Parse call costs it: the
    bytes it is given plus the unfinished token it has to scan again."""

    def __init__(self, real: Any) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "calls", 0)
        object.__setattr__(self, "given", 0)
        object.__setattr__(self, "work", 0)
        object.__setattr__(self, "max_held", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)

    def Parse(self, data: bytes, final: bool = False) -> int:
        held = self.given - max(self._real.CurrentByteIndex, 0)
        object.__setattr__(self, "calls", self.calls + 1)
        object.__setattr__(self, "work", self.work + held + len(data))
        object.__setattr__(self, "given", self.given + len(data))
        try:
            return self._real.Parse(data, final)
        finally:
            held = self.given - max(self._real.CurrentByteIndex, 0)
            object.__setattr__(self, "max_held", max(self.max_held, held))


@pytest.fixture
def expat_meter(monkeypatch: pytest.MonkeyPatch) -> list[CountingExpat]:
    """Every expat parser created during the test, wrapped in a CountingExpat."""
    made: list[CountingExpat] = []
    create = pyexpat.ParserCreate

    def counting(*args: Any) -> CountingExpat:
        wrapper = CountingExpat(create(*args))
        made.append(wrapper)
        return wrapper

    monkeypatch.setattr(parser_module.pyexpat, "ParserCreate", counting)
    return made


# -- what it builds ----------------------------------------------------------------------

def test_stream_header() -> None:
    """The root element carries its qualified name, the default namespace declared on
    it, plain attribute keys and xml:lang under the XML namespace."""
    parser, rec = make()
    parser.feed(HEADER)
    root = rec.root
    assert root is not None
    assert (root.uri, root.name) == (ns.STREAMS, "stream")
    assert root.defaultUri == ns.CLIENT
    assert root.attributes == {"to": "example.com", "from": "juliet@example.com", "id": "s1",
                               "version": "1.0", (ns.XML, "lang"): "en"}
    assert rec.elements == [] and rec.ended == 0


def test_root_is_not_validated() -> None:
    """Whatever the root is called and whatever its namespaces, it is reported (the
    stream layer judges it); without a default namespace, defaultUri is None and
    stanzas have the empty namespace, as in domish."""
    parser, rec = make()
    parser.feed(b"<foo:bar xmlns:foo='urn:other'><message/>")
    assert rec.root is not None
    assert (rec.root.uri, rec.root.name, rec.root.defaultUri) == ("urn:other", "bar", None)
    assert (rec.elements[0].uri, rec.elements[0].defaultUri) == ("", "")


def test_stanza_namespaces_and_attributes() -> None:
    """Stanzas and their children inherit the stream's default namespace; declared
    namespaces apply to their subtree; prefixed attributes are (uri, name) keys; text,
    entities, character references and CDATA become text."""
    parser, rec = make()
    parser.feed(HEADER + MESSAGE)
    (msg,) = rec.elements
    assert (msg.uri, msg.name, msg.defaultUri, msg.parent) == (ns.CLIENT, "message", ns.CLIENT, None)
    assert msg.attributes == {"to": "romeo@example.net", "type": "chat", "id": "m1", (ns.XML, "lang"): "de"}
    body, x = msg.elements()
    assert (body.uri, body.defaultUri, str(body)) == (ns.CLIENT, ns.CLIENT, "Hello & \u263a \u2603 <3")
    assert body.parent is msg
    assert (x.uri, x.defaultUri, x.localPrefixes) == ("urn:example:x", "urn:example:x", {"p": "urn:example:p"})
    assert x.attributes == {("urn:example:p", "attr"): "v"}
    y = next(x.elements())
    assert y.uri == "urn:example:x"
    assert [c if isinstance(c, str) else c.name for c in y.children] == ["text", "z", "tail"]
    assert msg.children[-1] == "<raw> & stuff"


def test_same_tree_as_domish() -> None:
    """For well-formed input the elements equal those twisted's domish stream builds."""
    parser, rec = make()
    parser.feed(DOCUMENT)
    theirs: list[domish.Element] = []
    stream = domish.ExpatElementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = theirs.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(DOCUMENT)
    assert [canon(e) for e in rec.elements] == [canon(e) for e in theirs]
    assert [e.localPrefixes for e in rec.elements] == [e.localPrefixes for e in theirs]


def test_stream_end_ignores_what_follows() -> None:
    """The closing tag is reported once; bytes after it, even garbage, are ignored."""
    parser, rec = make()
    parser.feed(DOCUMENT + b"<junk>&undefined; \xff")
    parser.feed(b"more junk")
    assert [e.name for e in rec.elements] == ["message", "presence", "iq"]
    assert rec.ended == 1


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 61, 1000, len(DOCUMENT)])
def test_any_chunk_size(size: int) -> None:
    """Reads of any size give the same result as the whole document at once."""
    whole, expected = make()
    whole.feed(DOCUMENT)
    parser, rec = make()
    feed_in(parser, DOCUMENT, size)
    assert [canon(e) for e in rec.elements] == [canon(e) for e in expected.elements]
    assert rec.ended == 1


def test_every_split_point() -> None:
    """The document cut in two at every byte offset parses the same, and each stanza
    is reported as soon as its last byte has arrived."""
    whole, expected = make()
    whole.feed(DOCUMENT)
    ends = [DOCUMENT.index(b"</message>") + 10, DOCUMENT.index(b"<presence/>") + 11,
            DOCUMENT.index(b"</iq>") + 5]
    for cut in range(1, len(DOCUMENT)):
        parser, rec = make()
        parser.feed(DOCUMENT[:cut])
        assert len(rec.elements) == sum(1 for end in ends if end <= cut), cut
        parser.feed(DOCUMENT[cut:])
        assert [canon(e) for e in rec.elements] == [canon(e) for e in expected.elements], cut


def test_stanza_delivered_without_waiting_for_more() -> None:
    """A stanza whose start tag arrived slowly is still delivered by the read that
    completes it (the parser never sits on a finished stanza)."""
    parser, rec = make()
    parser.feed(BARE_HEADER)
    start_tag = b"<message to='" + b"a" * 5000 + b"'>"
    for byte in range(len(start_tag)):
        parser.feed(start_tag[byte:byte + 1])
    assert rec.elements == []
    parser.feed(b"</message>")
    assert len(rec.elements) == 1


# -- what it refuses ------------------------------------------------------------------------

BILLION_LAUGHS = (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                  + b"".join(b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b"]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                  + b"<message><body>&lol9;</body></message>")


@pytest.mark.parametrize("size", [1, 7, None])
def test_billion_laughs(size: int | None) -> None:
    """Entity expansion never starts: the DOCTYPE is refused, in any chunking."""
    assert error_of(BILLION_LAUGHS, size).condition == "restricted-xml"


def test_external_entity() -> None:
    """An external entity (XXE) is refused before anything is fetched or expanded."""
    doc = (b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>" + BARE_HEADER
           + b"<message><body>&xxe;</body></message>")
    assert error_of(doc).condition == "restricted-xml"


@pytest.mark.parametrize("doctype", [b"<!DOCTYPE stream>", b"<!DOCTYPE stream SYSTEM 'http://x/y.dtd'>",
                                     b"<!DOCTYPE stream SYSTEM '" + b"x" * 20000])
def test_doctype(doctype: bytes) -> None:
    """Any DOCTYPE is restricted XML, even one that never ends (fed byte by byte, it
    is refused long before the stanza size limit)."""
    assert error_of(doctype + BARE_HEADER).condition == "restricted-xml"
    parser, _ = make(max_stanza_size=100000)
    with pytest.raises(StreamError) as info:
        feed_in(parser, doctype, 1)
    assert info.value.condition == "restricted-xml"


@pytest.mark.parametrize("markup", [
    b"<?php echo 1; ?>", b"<!-- a comment -->", b"<!--", b"<?target",
])
@pytest.mark.parametrize("where", ["prolog", "stream", "stanza"])
def test_comments_and_processing_instructions(markup: bytes, where: str) -> None:
    """Comments and processing instructions are restricted XML wherever they appear,
    even unfinished (the parser does not wait for the end of a comment)."""
    if where == "prolog":
        doc = markup
    elif where == "stream":
        doc = BARE_HEADER + markup
    else:
        doc = BARE_HEADER + b"<message>" + markup
    for size in (1, len(doc)):
        parser, _ = make()
        with pytest.raises(StreamError) as info:
            feed_in(parser, doc, size)
            parser.feed(b" x" * 10 + b">")  # something more: a finished comment may need it
        assert info.value.condition == "restricted-xml"


def test_xml_declaration_utf8_accepted() -> None:
    """The XML declaration is allowed, with or without encoding='UTF-8' (any case)."""
    for decl in (b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='UTF-8'?>",
                 b"<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes'?>"):
        parser, rec = make()
        feed_in(parser, decl + BARE_HEADER, 1)
        assert rec.root is not None


@pytest.mark.parametrize("doc", [
    b"<?xml version='1.0' encoding='ISO-8859-1'?>" + BARE_HEADER,
    b"<?xml version='1.0' encoding='UTF-16'?>" + BARE_HEADER,
    "<?xml version='1.0'?><stream/>".encode("utf-16"),
    "<stream/>".encode("utf-16-be"),
])
def test_other_encodings(doc: bytes) -> None:
    """Declaring another encoding, or sending UTF-16, is unsupported-encoding."""
    assert error_of(doc).condition == "unsupported-encoding"


@pytest.mark.parametrize("doc", [
    BARE_HEADER + b"<message><body>\xc3\x28</body></message>",  # invalid UTF-8
    BARE_HEADER + b"<message><body>\xed\xa0\x80</body></message>",  # UTF-8 encoded surrogate
    BARE_HEADER + b"<message><body>&nbsp;</body></message>",  # undefined entity
    BARE_HEADER + b"<message><body>&#0;</body></message>",  # character not allowed in XML
    BARE_HEADER + b"<message><body>\x01</body></message>",
    BARE_HEADER + b"<message><body></message>",  # mismatched tag
    BARE_HEADER + b"<message a='1' a='2'/>",  # duplicate attribute
    BARE_HEADER + b"<message><foo:body/></message>",  # unbound prefix
    BARE_HEADER + b"<message foo:a='1'/>",  # unbound attribute prefix
    b"<?xml version='1.0'?>" + BARE_HEADER + b"<?xml version='1.0'?>",  # misplaced declaration
])
def test_not_well_formed(doc: bytes) -> None:
    """What expat rejects — including namespace errors such as an unbound prefix
    (RFC 6120 §4.9.3.13 covers XML-NAMES) — is not-well-formed, however it is cut."""
    assert error_of(doc).condition == "not-well-formed"
    assert error_of(doc + b">", 1).condition == "not-well-formed"


# The first bytes of a TLS 1.3 ClientHello (record header, handshake header, version,
# random...): what a client that tries direct TLS first sends to the STARTTLS port.
# None of it is '>', so nothing in it could finish an XML token.
CLIENT_HELLO = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(0x40, 0x60))
                + b"\x20" + bytes(range(0x80, 0xa0)) + b"\x00\x3a\x13\x02\x13\x03\x13\x01\xc0\x2c")


@pytest.mark.parametrize("first", [
    CLIENT_HELLO,
    b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
    b"\r\n  \t" + b"SSH-2.0-OpenSSH_9.2",
    b"\xef\xbb\xbf" + b"GET / HTTP/1.1",
])
def test_not_xml_at_all_is_refused_at_once(first: bytes) -> None:
    """RFC 6120 §4.9.1.1: a stream whose first bytes cannot begin XML is not-well-formed
    on the read that brings them, not after a buffer's worth of bytes has piled up."""
    assert b">" not in first
    parser, rec = make()
    with pytest.raises(StreamError) as info:
        parser.feed(first)
    assert info.value.condition == "not-well-formed"
    assert rec.root is None


@pytest.mark.parametrize("start", [HEADER, b"\xef\xbb\xbf" + HEADER, b"\r\n " + BARE_HEADER,
                                   b"\xef\xbb\xbf\n" + BARE_HEADER])
def test_stream_header_dripped_after_space_or_bom_still_parses(start: bytes) -> None:
    """What may begin an XML document (a UTF-8 BOM, whitespace, a '<') is not judged
    early, however slowly it arrives."""
    parser, rec = make()
    feed_in(parser, start, 1)
    assert rec.root is not None and rec.root.name == "stream"


@pytest.mark.parametrize("text", [b"hello", b"<![CDATA[x]]>", "\u00a0".encode(), b"&amp;"])
def test_text_between_stanzas(text: bytes) -> None:
    """Non-whitespace text directly inside the stream root is bad-format."""
    assert error_of(BARE_HEADER + b"<presence/>" + text + b"<presence/>").condition == "bad-format"


def test_dead_after_error() -> None:
    """After an error, feed() does nothing: no callback, no second error."""
    parser, rec = make()
    with pytest.raises(StreamError):
        parser.feed(BARE_HEADER + b"<!-- -->")
    parser.feed(b"<message/>")
    parser.feed(b"</stream:stream>")
    assert rec.elements == [] and rec.ended == 0


def test_callback_exception_propagates_and_kills() -> None:
    """A callback's exception comes out of feed() unchanged and ends the parser."""
    def boom(el: domish.Element) -> None:
        raise KeyError("handler bug")

    parser, rec = make(on_element=boom)
    with pytest.raises(KeyError):
        parser.feed(BARE_HEADER + b"<presence/><presence/>")
    parser.feed(b"</stream:stream>")
    assert rec.ended == 0


def test_stop_from_callback() -> None:
    """stop() in a callback (e.g. on <starttls/>) drops everything after that element,
    including the rest of the same read: no plaintext injection."""
    parser: StreamParser
    seen: list[str] = []

    def element(el: domish.Element) -> None:
        seen.append(el.name)
        if el.name == "starttls":
            parser.stop()

    parser, rec = make(on_element=element)
    parser.feed(BARE_HEADER + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><auth>injected</auth>")
    parser.feed(b"<more/></stream:stream>")
    assert seen == ["starttls"] and rec.ended == 0


# -- limits ---------------------------------------------------------------------------------------

def sized_stanza(size: int) -> bytes:
    """A message of exactly *size* bytes."""
    head, tail = b"<message><body>", b"</body></message>"
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("size", [1, 100, 4096, None])
def test_stanza_size_limit_is_exact(size: int | None) -> None:
    """A stanza of exactly max_stanza_size bytes passes, one byte more is a
    policy-violation, however the bytes arrive; whitespace around stanzas is free."""
    limit = 10000
    ok = BARE_HEADER + b"  \n" + sized_stanza(limit) + b" " + sized_stanza(limit)
    parser, rec = make(max_stanza_size=limit)
    feed_in(parser, ok, size or len(ok))
    assert len(rec.elements) == 2
    error = error_of(BARE_HEADER + sized_stanza(limit) + sized_stanza(limit + 1), size, max_stanza_size=limit)
    assert error.condition == "policy-violation"


def test_oversized_stanza_never_reaches_expat(expat_meter: list[CountingExpat]) -> None:
    """A 1 MB stanza against a 10 000 byte limit: expat is handed only the limit's
    worth of it before the stream is failed, and never holds more."""
    limit = 10000
    parser, _ = make(max_stanza_size=limit)
    parser.feed(BARE_HEADER)
    with pytest.raises(StreamError) as info:
        parser.feed(sized_stanza(1_000_000))
    assert info.value.condition == "policy-violation"
    (meter,) = expat_meter
    assert meter.given <= len(BARE_HEADER) + limit
    assert meter.max_held <= limit


@pytest.mark.parametrize("attack", [
    b"<message to='" + b"a" * 2_000_000,  # an endless start tag
    b"<message><body>" + b"a" * 2_000_000,  # endless text
    b"<message " + b"a" * 2_000_000,  # an endless attribute name
])
def test_oversized_stanza_dripped(attack: bytes, expat_meter: list[CountingExpat]) -> None:
    """Fed in small reads, an endless stanza is failed within one CHUNK of the limit,
    and expat never holds more than the limit."""
    limit = 10000
    parser, _ = make(max_stanza_size=limit)
    parser.feed(BARE_HEADER)
    with pytest.raises(StreamError) as info:
        feed_in(parser, attack, 100)
    assert info.value.condition == "policy-violation"
    (meter,) = expat_meter
    assert meter.given <= len(BARE_HEADER) + limit + CHUNK
    assert meter.max_held <= limit


def test_stream_header_counts_as_a_stanza() -> None:
    """An endless stream header is a policy-violation too."""
    doc = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='" + b"x" * 50000
    assert error_of(doc, max_stanza_size=10000).condition == "policy-violation"
    assert error_of(doc, 1000, max_stanza_size=10000).condition == "policy-violation"


@pytest.mark.parametrize("space, size", [
    (b" ", 1), (b" ", 1000), (b" ", None), (b"\r\n", 1000), (b"\r\n", None), (b"\n\t", 999), (b"\n\t", None),
])
def test_whitespace_keepalives_are_free(space: bytes, size: int | None) -> None:
    """A megabyte of whitespace keepalives between stanzas never adds up to a stanza
    too large, however it arrives."""
    keepalives = space * (500_000 // len(space))
    doc = BARE_HEADER + b"<presence/>" + keepalives + sized_stanza(10000) + keepalives + b"<presence/>"
    parser, rec = make(max_stanza_size=10000)
    feed_in(parser, doc, size or len(doc))
    assert [e.name for e in rec.elements] == ["presence", "message", "presence"]


def test_depth_limit() -> None:
    """The stream root is depth 0 and a stanza depth 1: with max_depth=3 a stanza may
    have children and grandchildren, not great-grandchildren."""
    parser, rec = make(max_depth=3)
    parser.feed(BARE_HEADER + b"<message><a><b>text</b></a></message>")
    assert len(rec.elements) == 1
    error = error_of(BARE_HEADER + b"<message><a><b><c/></b></a></message>", max_depth=3)
    assert error.condition == "policy-violation"


def test_deep_nesting_attack() -> None:
    """Thousands of nested elements are refused at max_depth, byte by byte too."""
    doc = BARE_HEADER + b"<message>" + b"<a>" * 5000
    assert error_of(doc, max_depth=64, max_stanza_size=100000).condition == "policy-violation"
    assert error_of(doc, 1, max_depth=64, max_stanza_size=100000).condition == "policy-violation"


# -- cost -------------------------------------------------------------------------------------------

BIG = 256 * 1024


@pytest.mark.parametrize("token, max_calls", [
    pytest.param(b"<message a='" + b"x" * BIG + b"'/>", 100, id="attribute"),
    pytest.param(b"<message a='" + b">" * BIG + b"'/>", 100, id="attribute-of-gt"),
    pytest.param(b"<message a=\"'>" + b"'>" * (BIG // 2) + b"\"/>", 100, id="attribute-of-quote-gt"),
    pytest.param(b"<message" + b"x" * BIG + b"/>", 100, id="element-name"),
    pytest.param(b"<message></message" + b" " * BIG + b">", 100, id="end-tag"),
    pytest.param(b"<message><body>" + b"x" * BIG + b"</body></message>", 100, id="text"),
    pytest.param(b"<message><body>" + b"&amp;" * (BIG // 5) + b"</body></message>", 100, id="references"),
    # Every '>' may finish a stanza, so each is parsed when it arrives: one call per tag.
    pytest.param(b"<message>" + b"<a/>" * (BIG // 4) + b"</message>", BIG // 4 + 100, id="many-tags"),
])
def test_big_token_in_one_byte_reads_is_linear(token: bytes, max_calls: int,
                                               expat_meter: list[CountingExpat]) -> None:
    """A 256 KiB token (or stanza) arriving one byte per read costs expat linear work:
    it is given each byte once and scans a small multiple of the input in all (held
    unfinished tokens rescanned when they double, and once when they end) — even when
    the token is full of '>' inside quotes.  A big token takes a few dozen Parse calls,
    not one per byte (fed whole, expat would scan it once: 1x; one byte per call,
    about 130 000x for 256 KiB)."""
    doc = BARE_HEADER + token
    parser, rec = make(max_stanza_size=2 * BIG)
    for i in range(len(doc)):
        parser.feed(doc[i:i + 1])
    assert len(rec.elements) == 1
    (meter,) = expat_meter
    assert meter.given == len(doc)
    assert meter.work <= 4 * len(doc)
    assert meter.calls <= max_calls


def test_ordinary_traffic_is_parsed_once(expat_meter: list[CountingExpat]) -> None:
    """Many small stanzas in realistic reads: each byte is handed to expat exactly
    once and scanned about once, in about one Parse call per read."""
    doc = BARE_HEADER + b"".join(
        b"<message to='a@example.com' id='%d'><body>message number %d</body></message>" % (i, i)
        for i in range(2000))
    parser, rec = make()
    reads = pos = 0
    while pos < len(doc):
        size = 1000 + (pos * 7) % 3000
        parser.feed(doc[pos:pos + size])
        pos += size
        reads += 1
    assert len(rec.elements) == 2000
    (meter,) = expat_meter
    assert meter.given == len(doc)
    assert meter.work <= 1.05 * len(doc)
    assert meter.calls <= reads
