"""Dialback keys (XEP-0185) and the db: elements (XEP-0220)."""

from __future__ import annotations

from fedxmpp.s2s import dialback
from fedxmpp.s2s.dialback import DialbackKeys
from fedxmpp.xml.parser import StreamParser


def test_key_matches_the_xep_0220_example():
    """With the XEP's example secret, the key for capulet.example receiving from
    montague.example on stream 417GAF25 is the one printed in XEP-0220 §2.3."""
    keys = DialbackKeys(b"d14lb4ck43v3r")
    assert keys.key("capulet.example", "montague.example", "417GAF25") == \
        "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"


def test_check_accepts_only_the_exact_triple():
    """A key verifies for its own receiving domain, originating domain and stream
    id, and for nothing else; a key made with another secret never verifies."""
    keys = DialbackKeys(b"secret")
    key = keys.key("r.example", "o.example", "id1")
    assert keys.check("r.example", "o.example", "id1", key)
    assert keys.check("r.example", "o.example", "id1", f"  {key}\n")  # whitespace around the text
    assert not keys.check("r.example", "o.example", "id2", key)
    assert not keys.check("x.example", "o.example", "id1", key)
    assert not keys.check("r.example", "x.example", "id1", key)
    assert not keys.check("r.example", "o.example", "id1", "")
    assert not keys.check("r.example", "o.example", "id1", key + "0" * 2000)
    assert not DialbackKeys(b"other").check("r.example", "o.example", "id1", key)


def test_each_process_has_its_own_secret_and_never_shows_it():
    """Two DialbackKeys() make different keys for the same stream, and neither
    repr() nor str() reveals the secret."""
    a, b = DialbackKeys(), DialbackKeys()
    assert a.key("r", "o", "i") != b.key("r", "o", "i")
    assert repr(a) == str(a) == "<DialbackKeys>"
    assert not hasattr(a, "__dict__")


def _parse(text: str):
    got = []
    parser = StreamParser(on_stream_start=lambda root: None, on_element=got.append, on_stream_end=lambda: None,
                          max_stanza_size=10000, max_depth=8)
    parser.feed(("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
                 f"xmlns:db='jabber:server:dialback'>{text}").encode())
    return got[0]


def test_built_elements_parse_back_with_their_error():
    """build() writes db:-prefixed elements with escaped attributes, the key as text
    and XEP-0220 §2.6 errors; they parse back to the same values."""
    el = _parse(dialback.build("result", "a.example", "b'<.example", key="abc"))
    assert (el.uri, el.name, el["from"], el["to"], str(el)) == (dialback.NS_DIALBACK, "result", "a.example",
                                                                 "b'<.example", "abc")
    err = _parse(dialback.build("verify", "a.example", "b.example", id="x", type="error", error="item-not-found"))
    assert (err["type"], err["id"], dialback.error_condition(err)) == ("error", "x", "item-not-found")
    assert dialback.error_condition(_parse(dialback.build("result", "a", "b", type="valid"))) is None
