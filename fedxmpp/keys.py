"""The server's secret: one random key kept on disk, from which the keys that
must stay the same across restarts, and agree across the nodes of a cluster,
are derived (dialback keys, SCRAM credentials shown for unknown users).

By default it is ``<data_dir>/server.key``, created (mode 0600) on first start.
``[server] secret_file`` names another: then it must exist, so that nodes which
should share one never each make their own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

# Bytes of a new secret.
SIZE = 32
# A shorter file is refused: it was not made for this.
MIN_SIZE = 16


class SecretError(Exception):
    """The secret cannot be read or made; the message is for the operator."""


def load(path: Path, *, create: bool) -> bytes:
    """The secret in *path*; made there first when *create* and it is missing."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise SecretError(f"{str(path)!r} does not exist") from None
        return _create(path)
    except OSError as e:
        raise SecretError(f"cannot read {str(path)!r}: {e.strerror}") from None
    if len(secret) < MIN_SIZE:
        raise SecretError(f"{str(path)!r} holds {len(secret)} bytes; at least {MIN_SIZE} are needed")
    return secret


def _create(path: Path) -> bytes:
    secret = os.urandom(SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process made it first: use theirs.
        return load(path, create=False)
    except OSError as e:
        raise SecretError(f"cannot create {str(path)!r}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def derive(secret: bytes, purpose: str) -> bytes:
    """A key for one *purpose*, independent of the keys for any other."""
    return hmac.digest(secret, b"fedxmpp key\0" + purpose.encode("ascii"), hashlib.sha256)
