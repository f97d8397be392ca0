"""Affiliations and roles (XEP-0045 §5) and the rules between them."""

from __future__ import annotations

AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
ROLES = ("moderator", "participant", "visitor", "none")

_AFFILIATION_RANK = {"owner": 4, "admin": 3, "member": 2, "none": 1, "outcast": 0}
_ROLE_RANK = {"moderator": 3, "participant": 2, "visitor": 1, "none": 0}


def affiliation_rank(affiliation: str) -> int:
    return _AFFILIATION_RANK[affiliation]


def role_rank(role: str) -> int:
    return _ROLE_RANK[role]


def default_role(affiliation: str, moderated: bool) -> str:
    """The role an occupant enters with (§5.1.2)."""
    if affiliation in ("owner", "admin"):
        return "moderator"
    if affiliation == "member":
        return "participant"
    return "visitor" if moderated else "participant"


def may_set_affiliation(actor: str, target_now: str, target_new: str) -> bool:
    """Whether an *actor* affiliation may change a *target_now* affiliation to *target_new*
    (§9, §10): owners anything; admins only among member/none/outcast."""
    if actor == "owner":
        return True
    if actor == "admin":
        return target_now in ("member", "none", "outcast") and target_new in ("member", "none", "outcast")
    return False


def may_set_role(actor_role: str, actor_affiliation: str, target_affiliation: str, new_role: str) -> bool:
    """Whether a moderator may give *new_role* to an occupant of *target_affiliation* (§8, §9.6)."""
    if actor_role != "moderator":
        return False
    if new_role == "moderator" or target_affiliation in ("owner", "admin"):
        # Granting or revoking moderator, or touching an admin/owner: admins and owners,
        # and never someone of higher affiliation than oneself.
        return affiliation_rank(actor_affiliation) >= affiliation_rank("admin") and \
            affiliation_rank(actor_affiliation) >= affiliation_rank(target_affiliation)
    return True
