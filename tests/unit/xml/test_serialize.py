"""Serialising stanzas for a stream: namespaces, re-homing, escaping, depth."""

from __future__ import annotations

import pytest
from twisted.words.xish import domish

from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, StreamError, error_reply
from fedxmpp.xml.parser import StreamParser
from fedxmpp.xml.serialize import serialize


def header(stream_ns: str) -> bytes:
    return (f"<stream:stream xmlns='{stream_ns}' xmlns:stream='{ns.STREAMS}'>").encode()


def parse(stanzas: str | bytes, stream_ns: str = ns.CLIENT) -> list[domish.Element]:
    """The first-level elements of *stanzas* read in a stream of *stream_ns*."""
    out: list[domish.Element] = []
    parser = StreamParser(on_stream_start=lambda root: None, on_element=out.append, on_stream_end=lambda: None,
                          max_stanza_size=10_000_000, max_depth=10_000)
    data = stanzas.encode() if isinstance(stanzas, str) else stanzas
    parser.feed(header(stream_ns) + data)
    return out


def parse_one(stanza: str, stream_ns: str = ns.CLIENT) -> domish.Element:
    (el,) = parse(stanza, stream_ns)
    return el


def canon(node: object) -> object:
    """Namespace, name, attributes and children: what a stanza means."""
    if isinstance(node, str):
        return node
    assert isinstance(node, domish.Element)
    return (node.uri, node.name, sorted(node.attributes.items(), key=repr), [canon(c) for c in node.children])


STANZAS = [
    "<message to='romeo@example.net' from='juliet@example.com/balcony' type='chat' id='m1' xml:lang='en'>"
    "<body>Wherefore art thou? &amp; &lt;3 &gt; ]]&gt; \u2603</body><subject xml:lang='de'>Betreff</subject>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<presence><show>away</show><status>gone</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v=='/></presence>",
    "<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A &apos;B&quot;'>"
    "<group>Friends</group></item></query></iq>",
    "<message><x xmlns='urn:x' xmlns:p='urn:p' xmlns:q='urn:q' p:a='1' q:b='2'><y p:c='3'>mixed<z/>content</y></x>"
    "<body>after</body></message>",
    "<message type='error'><body>x</body><error type='cancel'>"
    "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    "<r xmlns='urn:xmpp:sm:3'/>",
]


@pytest.mark.parametrize("stream_ns", sorted(ns.STANZA_NAMESPACES))
@pytest.mark.parametrize("stanza", STANZAS)
def test_round_trip(stanza: str, stream_ns: str) -> None:
    """parse -> serialize -> parse gives back the same stanza, in every stream kind."""
    original = parse_one(stanza, stream_ns)
    assert canon(parse_one(serialize(original, stream_ns), stream_ns)) == canon(original)


@pytest.mark.parametrize("stanza", STANZAS)
def test_equivalent_to_domish(stanza: str) -> None:
    """Within one stream kind, what we write means what domish's toXml() writes."""
    original = parse_one(stanza)
    ours = parse_one(serialize(original, ns.CLIENT))
    theirs = parse_one(original.toXml())
    assert canon(ours) == canon(theirs)


def test_rehoming_client_to_server() -> None:
    """A jabber:client stanza written to a jabber:server stream carries no xmlns at any
    depth it shares the stanza namespace (stanza, body, error), and is read there as
    jabber:server; foreign payloads keep their namespaces."""
    original = parse_one(STANZAS[4])
    assert original.uri == ns.CLIENT
    text = serialize(original, ns.SERVER)
    assert "jabber:client" not in text
    assert text == ("<message type='error'><body>x</body><error type='cancel'>"
                    "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
    moved = parse_one(text, ns.SERVER)
    assert [e.uri for e in (moved, *moved.elements())] == [ns.SERVER, ns.SERVER, ns.SERVER]


@pytest.mark.parametrize("source, target", [(ns.SERVER, ns.CLIENT), (ns.CLIENT, ns.COMPONENT),
                                            (ns.COMPONENT, ns.SERVER)])
def test_rehoming_every_direction(source: str, target: str) -> None:
    """Re-homing works from and to every stanza namespace."""
    moved = parse_one(serialize(parse_one(STANZAS[0], source), target), target)
    assert moved.uri == target and next(moved.elements()).uri == target


def test_nested_stanza_keeps_its_namespace() -> None:
    """A stanza carried as content (XEP-0297 <forwarded/>) is not re-homed: it keeps
    its jabber:client namespace, declared where it differs from the scope."""
    outer = parse_one("<message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
                      "from='a@b'><body>inner</body></message></forwarded></message>")
    text = serialize(outer, ns.SERVER)
    assert text == ("<message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
                    "from='a@b'><body>inner</body></message></forwarded></message>")
    inner = parse_one(text, ns.SERVER).firstChildElement().firstChildElement()
    assert (inner.uri, inner.firstChildElement().uri) == (ns.CLIENT, ns.CLIENT)


def test_namespace_declared_where_it_changes() -> None:
    """xmlns appears where the namespace changes and not on children that share it; a
    sibling after a foreign subtree is back in the stream namespace."""
    el = domish.Element((ns.CLIENT, "iq"))
    query = el.addElement(("jabber:iq:roster", "query"))
    query.addElement("item")["jid"] = "a@b"
    el.addElement((ns.CLIENT, "error"))
    assert serialize(el, ns.CLIENT) == "<iq><query xmlns='jabber:iq:roster'><item jid='a@b'/></query><error/></iq>"


def test_uri_none_inherits_parent() -> None:
    """Elements built with uri None take their parent's namespace (the stream's at the
    top), so StanzaError.to_element() fits any stanza."""
    stanza = domish.Element((None, "iq"))
    query = stanza.addElement(("urn:example", "query"))
    query.addChild(domish.Element((None, "item")))
    stanza.addChild(StanzaError("item-not-found").to_element())
    text = serialize(stanza, ns.SERVER)
    assert text == ("<iq><query xmlns='urn:example'><item/></query><error type='cancel'>"
                    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    parsed = parse_one(text, ns.SERVER)
    assert parsed.firstChildElement().firstChildElement().uri == "urn:example"


def test_error_reply_from_another_stream() -> None:
    """An error reply built from a stanza read on c2s can be written to s2s."""
    reply = error_reply(parse_one(STANZAS[0]), StanzaError("service-unavailable"))
    parsed = parse_one(serialize(reply, ns.SERVER), ns.SERVER)
    assert (parsed.uri, parsed["type"], parsed["to"]) == (ns.SERVER, "error", "juliet@example.com/balcony")
    assert [e.uri for e in parsed.elements()][-1] == ns.SERVER


def test_stream_namespace_uses_stream_prefix() -> None:
    """Stream-level elements (features, errors) use the stream: prefix the header
    declares; their children declare their own namespaces."""
    assert serialize(StreamError("not-authorized", "no").to_element(), ns.CLIENT) == (
        "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>no</text></stream:error>")
    features = domish.Element((ns.STREAMS, "features"))
    features.addElement((ns.TLS, "starttls")).addElement("required")
    text = serialize(features, ns.CLIENT)
    assert text == ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                    "</stream:features>")
    (parsed,) = parse(text)
    assert (parsed.uri, parsed.firstChildElement().firstChildElement().uri) == (ns.STREAMS, ns.TLS)


def test_prefixed_attributes() -> None:
    """xml:lang is written as such; other namespaced attributes get a declared prefix,
    the one they were parsed with when free, a fresh one otherwise."""
    el = domish.Element((ns.CLIENT, "message"))
    el[(ns.XML, "lang")] = "fr"
    el[("urn:a", "x")] = "1"
    el[("urn:b", "y")] = "2"
    child = el.addElement(("urn:c", "c"))
    child[("urn:a", "z")] = "3"  # urn:a is already declared on the parent
    text = serialize(el, ns.CLIENT)
    assert text == ("<message xml:lang='fr' xmlns:ns0='urn:a' ns0:x='1' xmlns:ns1='urn:b' ns1:y='2'>"
                    "<c xmlns='urn:c' ns0:z='3'/></message>")
    parsed = parse_one(text)
    assert parsed.attributes == {(ns.XML, "lang"): "fr", ("urn:a", "x"): "1", ("urn:b", "y"): "2"}
    assert serialize(parse_one("<m xmlns:p='urn:p' p:a='1'/>"), ns.CLIENT) == "<m xmlns:p='urn:p' p:a='1'/>"


def test_sibling_prefixes_do_not_leak() -> None:
    """A prefix declared inside one subtree is declared again in a sibling subtree."""
    el = domish.Element((ns.CLIENT, "iq"))
    for name in ("a", "b"):
        el.addElement(name)[("urn:p", "x")] = name
    text = serialize(el, ns.CLIENT)
    assert text == "<iq><a xmlns:ns0='urn:p' ns0:x='a'/><b xmlns:ns0='urn:p' ns0:x='b'/></iq>"
    assert canon(parse_one(text)) == canon(parse_one(serialize(parse_one(text), ns.CLIENT)))


def test_hand_written_xmlns_attributes_ignored() -> None:
    """xmlns attributes set by hand cannot duplicate or contradict the namespace."""
    el = domish.Element(("urn:x", "x"))
    el["xmlns"] = "urn:evil"
    el["xmlns:p"] = "urn:p"
    el["xmlnsfoo"] = "kept"
    assert serialize(el, ns.CLIENT) == "<x xmlns='urn:x' xmlnsfoo='kept'/>"


def test_escaping() -> None:
    """Text escapes & < > (so ']]>' is harmless); attribute values also escape both
    quotes, tabs, newlines and carriage returns, and all survive a parse exactly."""
    text = "a & b < c > d ]]> e ' \" \t\n\r end"
    el = domish.Element((ns.CLIENT, "message"))
    el["to"] = text
    el.addElement("body", content=text)
    out = serialize(el, ns.CLIENT)
    assert out == ("<message to='a &amp; b &lt; c &gt; d ]]&gt; e &apos; &quot; &#9;&#10;&#13; end'>"
                   "<body>a &amp; b &lt; c &gt; d ]]&gt; e ' \" \t\n&#13; end</body></message>")
    parsed = parse_one(out)
    assert parsed["to"] == text and str(parsed.body) == text


def test_characters_xml_forbids_are_replaced() -> None:
    """C0 controls, lone surrogates, U+FFFE and U+FFFF never reach the wire: each
    becomes U+FFFD, in text and in attributes; the output is valid UTF-8 XML."""
    bad = "a\x00b\x08c\x0bd\x1fe\ud800f\ufffeg\uffffh"
    el = domish.Element((ns.CLIENT, "message"))
    el["id"] = bad
    el.addElement("body", content=bad)
    out = serialize(el, ns.CLIENT)
    expected = "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\ufffdh"
    parsed = parse_one(out.encode("utf-8"))
    assert parsed["id"] == expected and str(parsed.body) == expected


def test_deep_tree_without_recursion() -> None:
    """A code-built tree 5000 levels deep serialises (domish's recursive toXml() would
    hit the recursion limit) and reads back identically."""
    root = domish.Element((ns.CLIENT, "message"))
    el = root
    for i in range(5000):
        el = el.addElement(("urn:deep", "d"))
    el.addContent("bottom")
    text = serialize(root, ns.SERVER)
    assert text.startswith("<message><d xmlns='urn:deep'><d><d>")
    assert text.endswith("<d>bottom" + "</d>" * 5000 + "</message>")
    assert text.count("<d") == 5000 and text.count("</d>") == 5000
    parsed = parse_one(text, ns.SERVER)
    depth = 0
    node = parsed
    while node.firstChildElement() is not None:
        node = node.firstChildElement()
        depth += 1
    assert depth == 5000 and str(node) == "bottom"


def test_rejects_foreign_children() -> None:
    """Anything but text and elements in a tree is a programming error, reported."""
    el = domish.Element((ns.CLIENT, "message"))
    el.children.append(42)
    with pytest.raises(TypeError):
        serialize(el, ns.CLIENT)
