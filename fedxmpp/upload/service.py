"""XEP-0363 HTTP upload: the XMPP side (disco, slot requests) at the upload domain,
routed like a component, and the HTTP side under ``/upload/`` on the listener.

A slot request from a hosted domain's user, within ``max_size`` and the quotas,
gets a PUT URL carrying a signed token (:mod:`.slots`) and the GET URL.  The PUT
is checked before its body is read: the token, the size (Content-Length equal
to the slot's) and the type; its body goes straight to the file on disk.  GET
answers with the stored type, ``Content-Disposition: attachment``, ``nosniff``
and a CSP that lets nothing run, so an uploaded HTML or SVG file cannot script
the server's origin.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web import pages, resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.words.xish import domish

from zope.interface import implementer

from fedxmpp.config import UploadConfig
from fedxmpp.hooks import Hooks
from fedxmpp.http.listener import HttpService
from fedxmpp.router import Router
from fedxmpp.upload.slots import Slot, new_slot_id, safe_name, sign, verify
from fedxmpp.upload.store import FileStore, QuotaExceeded, SlotUsed
from fedxmpp.xml import ns
from fedxmpp.xml.errors import StanzaError, error_reply
from fedxmpp.xml.jid import JID

log = Logger()

UPLOAD = "urn:xmpp:http:upload:0"
DATA_FORMS = "jabber:x:data"
PATH = b"upload"
EXPIRY_INTERVAL = 3600.0
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
_NOT_FOUND = pages.notFound("No such file", "")
CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


class Upload:
    def __init__(self, settings: UploadConfig, http: HttpService, router: Router, hooks: Hooks,
                 clock: IReactorTime, key: bytes) -> None:
        self.settings = settings
        self.http = http
        self.router = router
        self.clock = clock
        self.key = key
        self.jid = JID.parse(settings.domain)
        self.store = FileStore(settings.storage_dir, user_quota=settings.user_quota,
                               total_quota=settings.total_quota)
        router.add_route(settings.domain, self.route)
        http.add(PATH, _Files(self))
        http.body_handlers.append(self.body_for)
        hooks.add("account/removed", self._account_removed)
        self._expiry: task.LoopingCall | None = None

    def start(self) -> None:
        self.store.load()
        if self.settings.expire_days:
            self._expiry = task.LoopingCall(self.expire)
            self._expiry.clock = self.clock
            self._expiry.start(EXPIRY_INTERVAL, now=True)

    def stop(self) -> None:
        if self._expiry is not None and self._expiry.running:
            self._expiry.stop()

    def expire(self) -> None:
        before = self.clock.seconds() - self.settings.expire_days * 86400
        for stored in self.store.expired(before):
            self.store.remove(stored.id)
            log.info("Upload {id} of {owner} expired", id=stored.id, owner=stored.owner)

    def _account_removed(self, bare: JID) -> bool:
        for stored in self.store.owned_by(bare.full()):
            self.store.remove(stored.id)
        return False

    def disco_items(self, *_query: Any) -> list[tuple[JID, str]]:
        return [(self.jid, "HTTP file upload")]

    # -- XMPP side ------------------------------------------------------------------------

    def route(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        kind = stanza.getAttribute("type")
        if stanza.name != "iq" or kind not in ("get", "set"):
            if stanza.name == "message":
                self.router.bounce(stanza, frm, to, StanzaError("service-unavailable"))
            return
        payload = next(stanza.elements(), None)
        if payload is None or to.user is not None or to.resource is not None:
            self.router.bounce(stanza, frm, to, StanzaError("service-unavailable"))
            return
        what = (kind, payload.uri, payload.name)
        if what == ("get", ns.DISCO_INFO, "query") and not payload.getAttribute("node"):
            self._reply(stanza, frm, self._info())
        elif what == ("get", ns.DISCO_ITEMS, "query"):
            self._reply(stanza, frm, domish.Element((ns.DISCO_ITEMS, "query")))
        elif what == ("get", UPLOAD, "request"):
            self._slot(stanza, frm, to, payload)
        else:
            self.router.bounce(stanza, frm, to, StanzaError("service-unavailable"))

    def _info(self) -> domish.Element:
        query = domish.Element((ns.DISCO_INFO, "query"))
        identity = query.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "store", "file", "HTTP file upload"
        for feature in (UPLOAD, ns.DISCO_INFO, ns.DISCO_ITEMS):
            query.addElement("feature")["var"] = feature
        form = query.addElement((DATA_FORMS, "x"))
        form["type"] = "result"
        for var, value, hidden in (("FORM_TYPE", UPLOAD, True), ("max-file-size", str(self.settings.max_size), False)):
            field = form.addElement("field")
            field["var"] = var
            if hidden:
                field["type"] = "hidden"
            field.addElement("value", content=value)
        return query

    def _slot(self, stanza: domish.Element, frm: JID, to: JID, request: domish.Element) -> None:
        if frm.user is None or frm.host not in self.router.hosted:
            self.router.bounce(stanza, frm, to, StanzaError("forbidden", "uploads are for this server's users"))
            return
        name, size_text = request.getAttribute("filename") or "", request.getAttribute("size") or ""
        media_type = request.getAttribute("content-type") or "application/octet-stream"
        if not name or not size_text.isdigit() or int(size_text) <= 0 or not _MEDIA_TYPE.fullmatch(media_type):
            self.router.bounce(stanza, frm, to, StanzaError(
                "bad-request", "a slot request needs a filename, a positive size and a valid content-type"))
            return
        size = int(size_text)
        if size > self.settings.max_size:
            self._too_large(stanza, frm, to)
            return
        try:
            self.store.check_quota(frm.bare.full(), size)
        except QuotaExceeded as e:
            self.router.bounce(stanza, frm, to, StanzaError("resource-constraint", str(e), "wait"))
            return
        slot = Slot(id=new_slot_id(), name=safe_name(name), size=size, type=media_type.lower(),
                    owner=frm.bare.full(), expires=int(self.clock.seconds()) + self.settings.slot_lifetime)
        get_url = self.http.url(PATH.decode(), slot.id, quote(slot.name, safe=""))
        answer = domish.Element((UPLOAD, "slot"))
        answer.addElement("put")["url"] = f"{get_url}?t={sign(self.key, slot)}"
        answer.addElement("get")["url"] = get_url
        self._reply(stanza, frm, answer)

    def _too_large(self, stanza: domish.Element, frm: JID, to: JID) -> None:
        reply = error_reply(stanza, StanzaError("not-acceptable", "file too large", "modify"))
        reply["from"], reply["to"] = to.full(), frm.full()
        error = next(c for c in reply.elements() if c.name == "error")
        too_large = error.addElement((UPLOAD, "file-too-large"))
        too_large.addElement("max-file-size", content=str(self.settings.max_size))
        self.router.route(reply, to, frm)

    def _reply(self, stanza: domish.Element, frm: JID, payload: domish.Element) -> None:
        result = domish.Element((ns.CLIENT, "iq"))
        result["type"], result["id"] = "result", stanza.getAttribute("id", "")
        result["from"], result["to"] = self.jid.full(), frm.full()
        result.addChild(payload)
        self.router.route(result, self.jid, frm)

    # -- HTTP side ------------------------------------------------------------------------

    def body_for(self, request: Request, method: bytes, path: bytes, length: int | None) -> Any:
        """Where a PUT under /upload/ writes its body: the slot's file, or a sink
        (and a refusal to answer with) when the PUT does not match a valid slot."""
        if method != b"PUT" or not path.startswith(b"/" + PATH + b"/"):
            return None
        try:
            slot, refusal = self._check_put(request, path, length)
        except UnicodeDecodeError:
            slot, refusal = None, (400, "bad URL")
        if slot is not None:
            try:
                target = self.store.begin(slot)
            except SlotUsed:
                refusal = (409, "this slot has been used")
            except QuotaExceeded as e:
                refusal = (413, str(e))
            except OSError as e:
                log.error("Upload {id}: cannot create its file: {error}", id=slot.id, error=e)
                refusal = (500, "cannot store the file")
            else:
                setattr(request, "upload", (slot, None))  # read back in finish_put
                body = _Body(target)
                request.notifyFinish().addErrback(lambda _: self._cut_short(slot, body))
                return body
        setattr(request, "upload", (None, refusal))  # read back in finish_put
        return _Sink()

    def _check_put(self, request: Request, path: bytes, length: int | None) -> tuple[Slot | None, Any]:
        parts = urlsplit(path.decode("ascii"))
        segments = parts.path.split("/")
        token = parse_qs(parts.query).get("t", [""])[0]
        slot = verify(self.key, token, self.clock.seconds()) if token else None
        if slot is None or [unquote(s, errors="strict") for s in segments[2:]] != [slot.id, slot.name]:
            return None, (403, "no valid upload slot for this URL (or it has expired)")
        if length is None or length != slot.size:
            return None, (400, f"the slot is for exactly {slot.size} bytes (Content-Length)")
        sent_type = (request.requestHeaders.getRawHeaders(b"content-type") or [b"application/octet-stream"])[0]
        if sent_type.decode("latin-1").split(";")[0].strip().lower() != slot.type:
            return None, (400, f"the slot is for content type {slot.type}")
        return slot, None

    def _cut_short(self, slot: Slot, body: _Body) -> None:
        if not body.finished:
            body.close()
            self.store.abandon(slot.id)
            log.info("Upload {id} of {owner} cut short", id=slot.id, owner=slot.owner)

    def finish_put(self, request: Request) -> bytes:
        slot, refusal = getattr(request, "upload", (None, (400, "bad request")))
        if slot is None:
            code, text = refusal
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return text.encode("utf-8") + b"\n"
        body = request.content
        assert isinstance(body, _Body)  # what begin_put gave twisted.web to write the body into
        body.finished = True
        body.close()
        if body.written != slot.size:
            self.store.abandon(slot.id)
            request.setResponseCode(400)
            return b"size mismatch\n"
        self.store.finish(slot, self.clock.seconds())
        log.info("Upload {id} of {owner}: {size} bytes", id=slot.id, owner=slot.owner, size=slot.size)
        request.setResponseCode(201)
        return b""

    def serve(self, request: Request, slot_id: str, name: str) -> Any:
        stored = self.store.get(slot_id)
        if stored is None or stored.name != name:
            return _NOT_FOUND.render(request)
        request.setHeader(b"content-disposition",
                          f"attachment; filename*=UTF-8''{quote(stored.name, safe='')}".encode("ascii"))
        request.setHeader(b"content-security-policy", CSP.encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"public, max-age=31536000, immutable")
        path = self.store.path(stored)
        try:
            source = open(path, "rb")
        except OSError:
            return _NOT_FOUND.render(request)
        request.setHeader(b"content-type", stored.type.encode("ascii"))
        request.setHeader(b"content-length", str(os.fstat(source.fileno()).st_size).encode("ascii"))
        if request.method == b"HEAD":
            source.close()
            return b""
        _FileProducer(source, request).start()
        return NOT_DONE_YET


class _Files(resource.Resource):
    """``/upload/<slot id>/<file name>``: PUT with a slot token, GET, HEAD."""

    isLeaf = True

    def __init__(self, upload: Upload) -> None:
        super().__init__()
        self.upload = upload

    def render_PUT(self, request: Request) -> bytes:
        return self.upload.finish_put(request)

    def render_GET(self, request: Request) -> Any:
        postpath = request.postpath or []
        if len(postpath) != 2:
            return _NOT_FOUND.render(request)
        try:  # twisted.web has already percent-decoded each segment
            slot_id, name = (p.decode("utf-8") for p in postpath)
        except UnicodeDecodeError:
            return _NOT_FOUND.render(request)
        return self.upload.serve(request, slot_id, name)

    render_HEAD = render_GET


@implementer(IPushProducer)
class _FileProducer:
    """A stored file written to a GET response a chunk at a time, only while the
    connection takes it (the transport pauses us when its buffer is full)."""

    CHUNK = 64 * 1024

    def __init__(self, source: IO[bytes], request: Request) -> None:
        self.source = source
        self.request = request
        self.paused = False
        self.done = False
        self._writing = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        if self._writing:
            return
        self._writing = True
        try:
            while not self.paused and not self.done:
                data = self.source.read(self.CHUNK)
                if not data:
                    self.done = True
                    self.source.close()
                    self.request.unregisterProducer()
                    self.request.finish()
                    return
                self.request.write(data)
        finally:
            self._writing = False

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.done = True
        self.source.close()


class _Body:
    """The PUT body's file, as twisted.web's request content."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.written = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.target.write(data)

    def tell(self) -> int:
        return self.written

    def seek(self, *_args: Any) -> None:
        pass

    def read(self, *_args: Any) -> bytes:
        return b""

    def close(self) -> None:
        if not self.target.closed:
            self.target.close()


class _Sink(_Body):
    """A refused PUT's body: read from the network, kept nowhere."""

    def __init__(self) -> None:
        self.written = 0
        self.finished = False
        self.target = None  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass


def load_key(path: Path) -> bytes:
    """The slot-signing key kept at *path* (created, 0600, on first use)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key


