"""Dropping root after the listeners are bound ([server] user and group).

Started as root (to bind ports below 1024 without capabilities), the server
binds every listener, hands its data directory to the configured user, and
switches to that user and group for good: real, effective and saved IDs, and
supplementary groups.  Files the server writes later are the user's.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Iterable

from twisted.logger import Logger

log = Logger()


class PrivilegeError(Exception):
    """The switch cannot be made; the message is for the operator."""


def resolve(user: str, group: str) -> tuple[int, int]:
    """The uid and gid of *user* and *group* (its primary group when empty)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"no such user {user!r}") from None
    if not group:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"no such group {group!r}") from None


def hand_over(paths: Iterable[Path], uid: int, gid: int) -> int:
    """Give *paths*, and everything under the directories among them, to
    uid:gid; symbolic links are changed themselves, never followed.  The number
    of entries changed."""
    changed = 0
    for top in paths:
        if not top.exists():
            continue
        entries = [top]
        if top.is_dir() and not top.is_symlink():
            for directory, subdirs, files in os.walk(top):
                entries.extend(Path(directory) / name for name in subdirs + files)
        for path in entries:
            st = path.lstat()
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)
                changed += 1
    return changed


def drop(user: str, group: str, owned: Iterable[Path]) -> None:
    """Switch this process to *user*:*group* for good, after handing *owned* over."""
    uid, gid = resolve(user, group)
    changed = hand_over(owned, uid, gid)
    if changed:
        log.info("Gave {n} files in the data directory to {user}", n=changed, user=user)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(f"could not switch to {user!r}")
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        pass
    else:
        raise PrivilegeError("root could be regained after the switch")
    log.info("Running as {user} (uid {uid}, gid {gid})", user=user, uid=uid, gid=gid)
