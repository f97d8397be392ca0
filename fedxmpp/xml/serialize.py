"""Write a stanza (or nonza) for a particular stream.

:func:`serialize` writes one first-level element the way it must appear inside a
stream whose default namespace is *stream_ns*:

* Stanza namespaces are interchangeable on the wire: an element in ``jabber:client``,
  ``jabber:server`` or ``jabber:component:accept`` that continues its parent's stanza
  namespace (the stanza itself, its ``<body/>``, ``<error/>``...) is written in the
  stream's namespace without ``xmlns``, so a stanza read from one kind of stream can
  be written to another.  A stanza nested under another namespace, such as the
  ``<message xmlns='jabber:client'/>`` inside a XEP-0297 ``<forwarded/>``, is content
  and keeps its own namespace.
* An element whose ``uri`` is None (built with ``domish.Element((None, name))``)
  takes its parent's namespace; a first-level one takes the stream's.
* Other namespaces get ``xmlns='...'`` where they change; elements in the stream
  namespace are written ``stream:name`` (the stream header declares that prefix).
* ``xml:lang`` and other ``(ns.XML, name)`` attributes are written ``xml:name``; other
  namespaced attributes get a declared prefix (the one they were parsed with when
  possible).  ``xmlns`` attributes set by hand are ignored: namespaces come from
  ``uri``.
* Text and attribute values are escaped; characters XML 1.0 does not allow (C0
  controls other than tab/newline/carriage return, lone surrogates, U+FFFE/U+FFFF)
  never reach the wire: each is replaced by U+FFFD.  Carriage returns (and, in
  attributes, tabs and newlines) are written as character references so that they
  survive the reader's normalisation.

The walk is iterative, so code-built trees of any depth serialise without recursion.
"""

from __future__ import annotations

import re
from typing import Iterator

from twisted.words.xish import domish

from fedxmpp.xml import ns

__all__ = ["serialize"]

_END = object()
_REPLACEMENT = "\ufffd"
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;",
            "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}
_INVALID = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_TEXT_SPECIAL = re.compile(f"[&<>\r{_INVALID}]")
_ATTR_SPECIAL = re.compile(f"[&<>'\"\t\n\r{_INVALID}]")


def _replace(m: re.Match[str]) -> str:
    return _ESCAPES.get(m.group(), _REPLACEMENT)


def _text(s: str) -> str:
    return s if _TEXT_SPECIAL.search(s) is None else _TEXT_SPECIAL.sub(_replace, s)


def _attr(s: str) -> str:
    return s if _ATTR_SPECIAL.search(s) is None else _ATTR_SPECIAL.sub(_replace, s)


def serialize(element: domish.Element, stream_ns: str, standalone: bool = False) -> str:
    """The XML text of *element* as a child of a stream whose default namespace is
    *stream_ns* (see the module documentation for the rules).

    *standalone*: the element is a document of its own (RFC 7395 §3.3.3: one
    WebSocket message each), so it declares the namespaces it is in — the stream's
    (``xmlns='jabber:client'``) and the ``stream`` prefix — instead of inheriting
    them from a stream header."""
    if standalone:
        text = _serialize(element, stream_ns, "")
        if element.uri == ns.STREAMS:
            tag = "<stream:" + element.name
            text = f"{tag} xmlns:stream='{ns.STREAMS}'" + text[len(tag):]
        return text
    return _serialize(element, stream_ns, stream_ns)


def _serialize(element: domish.Element, stream_ns: str, default_ns: str) -> str:
    out: list[str] = []
    write = out.append
    attr_search = _ATTR_SPECIAL.search
    stanza_namespaces = ns.STANZA_NAMESPACES
    streams = ns.STREAMS
    # Open elements, innermost last: (children, closing tag, namespace written in,
    # default namespace inside, continues the stanza namespace, namespace -> prefix).
    stack: list[tuple[Iterator[object], str, str, str, bool, dict[str, str]]] = []
    node: object = element
    # The context of the element being opened.
    p_uri, p_default, p_chain, p_prefixes = stream_ns, default_ns, True, {streams: "stream", ns.XML: "xml"}
    while True:
        if type(node) is str:
            write(node if _TEXT_SPECIAL.search(node) is None else _TEXT_SPECIAL.sub(_replace, node))
        elif isinstance(node, domish.Element):
            el = node
            uri = el.uri
            chain = False
            if uri is None:
                uri = p_uri
                chain = p_chain
            elif p_chain and uri in stanza_namespaces:
                uri = stream_ns
                chain = True
            default = p_default
            if uri == streams and default != streams:
                name = "stream:" + el.name
                write("<" + name)
            elif uri == default:
                name = el.name
                write("<" + name)
            else:
                name = el.name
                write(f"<{name} xmlns='{_attr(uri)}'")
                default = uri
            prefixes = p_prefixes
            for key, value in el.attributes.items():
                if attr_search(value) is not None:
                    value = _ATTR_SPECIAL.sub(_replace, value)
                if type(key) is str:
                    if key[:5] != "xmlns" or (len(key) > 5 and key[5] != ":"):
                        write(f" {key}='{value}'")
                    continue
                auri, aname = key
                if not auri:
                    write(f" {aname}='{value}'")
                    continue
                prefix = prefixes.get(auri)
                if prefix is None:
                    prefix = _new_prefix(el, auri, prefixes)
                    if prefixes is p_prefixes:
                        prefixes = dict(p_prefixes)
                    prefixes[auri] = prefix
                    write(f" xmlns:{prefix}='{_attr(auri)}'")
                write(f" {prefix}:{aname}='{value}'")
            if el.children:
                write(">")
                stack.append((iter(el.children), f"</{name}>", uri, default, chain, prefixes))
            else:
                write("/>")
        elif isinstance(node, str):
            write(_text(node))
        else:
            raise TypeError(f"cannot serialise {type(node).__name__} in an element tree")

        # Move on: the next child of the innermost open element, closing the
        # elements whose children are exhausted.
        while stack:
            children, close, p_uri, p_default, p_chain, p_prefixes = stack[-1]
            node = next(children, _END)
            if node is not _END:
                break
            write(close)
            stack.pop()
        else:
            return "".join(out)


def _new_prefix(el: domish.Element, uri: str, in_scope: dict[str, str]) -> str:
    """A prefix for *uri* not bound to anything else here: the one *el* was parsed
    with if it is free, else ``ns0``, ``ns1``..."""
    used = set(in_scope.values())
    for prefix, puri in el.localPrefixes.items():
        if puri == uri and prefix not in used and not prefix.lower().startswith("xml"):
            return prefix
    n = 0
    while f"ns{n}" in used:
        n += 1
    return f"ns{n}"
