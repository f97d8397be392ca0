"""Uploaded files on disk, and who uploaded what.

Each file has a directory named after its slot id (a random, URL-safe token, the
only name taken from a URL): ``data`` holds the bytes, ``meta.json`` the owner,
file name, size, content type and upload time.  The directory is created when a
PUT starts (``os.mkdir`` fails if the slot was used: a used slot cannot be
overwritten) and removed if the upload does not complete.

The index (slot id -> metadata) is read once at start and kept in memory for
quotas, expiry and removing an account's files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Iterator

from twisted.logger import Logger

from fedxmpp.upload.slots import SLOT_ID, Slot

log = Logger()


@dataclass(frozen=True)
class Stored:
    id: str
    name: str
    size: int
    type: str
    owner: str
    created: float


class QuotaExceeded(Exception):
    pass


class SlotUsed(Exception):
    pass


class FileStore:
    def __init__(self, root: Path, *, user_quota: int, total_quota: int) -> None:
        self.root = root
        self.user_quota = user_quota
        self.total_quota = total_quota
        self.files: dict[str, Stored] = {}
        # Bytes of uploads in progress, by slot id (counted against the quotas).
        self.reserved: dict[str, tuple[str, int]] = {}

    def load(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if not SLOT_ID.fullmatch(entry.name):
                continue
            try:
                meta = Stored(**json.loads((entry / "meta.json").read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                # An upload cut short by a crash: nothing complete to keep.
                shutil.rmtree(entry, ignore_errors=True)
                continue
            self.files[meta.id] = meta

    # -- quotas ---------------------------------------------------------------------------

    def used_by(self, owner: str) -> int:
        return (sum(f.size for f in self.files.values() if f.owner == owner)
                + sum(size for who, size in self.reserved.values() if who == owner))

    def used(self) -> int:
        return sum(f.size for f in self.files.values()) + sum(size for _, size in self.reserved.values())

    def check_quota(self, owner: str, size: int) -> None:
        if self.user_quota and self.used_by(owner) + size > self.user_quota:
            raise QuotaExceeded(f"your uploads would exceed {self.user_quota} bytes")
        if self.total_quota and self.used() + size > self.total_quota:
            raise QuotaExceeded("the server's upload space is full")

    # -- one upload ---------------------------------------------------------------------

    def begin(self, slot: Slot) -> IO[bytes]:
        """The file the body of *slot*'s PUT is written to."""
        self.check_quota(slot.owner, slot.size)
        directory = self.root / slot.id
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            raise SlotUsed(slot.id) from None
        self.reserved[slot.id] = (slot.owner, slot.size)
        return open(directory / "data.part", "wb")

    def finish(self, slot: Slot, now: float) -> Stored:
        directory = self.root / slot.id
        os.replace(directory / "data.part", directory / "data")
        stored = Stored(id=slot.id, name=slot.name, size=slot.size, type=slot.type, owner=slot.owner, created=now)
        (directory / "meta.json").write_text(json.dumps(asdict(stored)), encoding="utf-8")
        self.reserved.pop(slot.id, None)
        self.files[slot.id] = stored
        return stored

    def abandon(self, slot_id: str) -> None:
        """An upload that did not complete: forget it and free its slot."""
        self.reserved.pop(slot_id, None)
        shutil.rmtree(self.root / slot_id, ignore_errors=True)

    # -- reading and removing -----------------------------------------------------------

    def get(self, slot_id: str) -> Stored | None:
        return self.files.get(slot_id) if SLOT_ID.fullmatch(slot_id) else None

    def path(self, stored: Stored) -> Path:
        return self.root / stored.id / "data"

    def remove(self, slot_id: str) -> None:
        self.files.pop(slot_id, None)
        shutil.rmtree(self.root / slot_id, ignore_errors=True)

    def expired(self, before: float) -> Iterator[Stored]:
        return iter([f for f in self.files.values() if f.created < before])

    def owned_by(self, owner: str) -> list[Stored]:
        return [f for f in self.files.values() if f.owner == owner]
