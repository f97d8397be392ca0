"""Upload slots as signed tokens.

A slot is everything the PUT must match (id, file name, size, content type, who
asked, until when), serialised and authenticated with HMAC-SHA256 under a key
only the server knows.  The server keeps no table of slots: a PUT carries its
token, and a token that does not verify or has expired is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from dataclasses import asdict, dataclass

SLOT_ID = re.compile(r"[A-Za-z0-9_-]{22}")
MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class Slot:
    id: str
    name: str
    size: int
    type: str
    owner: str
    expires: int


def new_slot_id() -> str:
    return secrets.token_urlsafe(16)


def safe_name(requested: str) -> str:
    """A file name that is one path segment: the last component of *requested*,
    without control characters, at most 200 bytes; "file" when nothing is left."""
    name = re.split(r"[/\\\\]", requested)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    return "file" if name in ("", ".", "..") else name


def sign(key: bytes, slot: Slot) -> str:
    body = base64.urlsafe_b64encode(json.dumps(asdict(slot), separators=(",", ":")).encode("utf-8")).rstrip(b"=")
    mac = base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).rstrip(b"=")
    return (body + b"." + mac).decode("ascii")


def verify(key: bytes, token: str, now: float) -> Slot | None:
    """The slot *token* stands for, if it verifies under *key* and has not expired."""
    body, _, mac = token.encode("ascii", "replace").partition(b".")
    expected = base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).rstrip(b"=")
    if not mac or not hmac.compare_digest(mac, expected):
        return None
    try:
        slot = Slot(**json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))))
    except (ValueError, TypeError):
        return None
    return slot if slot.expires >= now else None
