"""The order of the stanza chains, in one table.

A stanza for a hosted user passes the handlers of its delivery event (named by
:mod:`fedxmpp.im.delivery`) in the order below, top first; a stanza a user's
client sends passes the ``pre-`` events (:mod:`fedxmpp.im.outbound`) first.  The
first handler that returns True has taken the stanza; a handler may return an
awaitable, and the chain goes on when it resolves (in order per recipient).

Each handler is one of two kinds:

* **policy** — decides whether the stanza may pass at all (blocking).  If it
  raises, the stanza is refused with ``<internal-server-error/>``: it is never
  delivered past a policy that could not decide (fails closed);
* **feature** — adds to the stanza or acts beside it (carbons, the archive,
  presence, offline storage...).  If it raises, the failure is logged and the
  chain goes on, so one broken feature cannot silence the others.

Handlers hook in by step name (``hooks.add(event, handler, step="blocking")``);
the step gives the priority and the kind, so this table is the only place where
the order is decided.

Beside the chains, plain events tell features where a stanza ended up:
``message/delivered`` (given to resources), ``offline/stored`` (committed to
offline storage), ``c2s/hibernating-queued`` (queued for a hibernating XEP-0198
session); XEP-0357 push hooks the last two.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    priority: int
    policy: bool
    does: str


POLICY, FEATURE = True, False

STEPS: dict[str, Step] = {s.name: s for s in (
    Step("offline-hold", 10_000, FEATURE,
         "waits while the user's stored messages are being taken (XEP-0160), so arrival order holds"),
    Step("last-activity", 1_000, FEATURE, "remembers the status of the user's last unavailable presence"),
    Step("blocking", 500, POLICY, "XEP-0191: refuses stanzas from and to blocked addresses"),
    Step("carbons", 200, FEATURE, "XEP-0280: removes <private/> hints, marks what gets copies"),
    Step("privilege", 100, FEATURE, "XEP-0356: components' privileged roster and message access"),
    Step("pep", 100, FEATURE, "XEP-0163: contacts' caps and presence for notifications"),
    Step("push", 50, FEATURE, "XEP-0357: takes app servers' answers, learns room nicknames for mentions"),
    Step("archive", 100, FEATURE, "XEP-0313: archives and stamps <stanza-id/>; the row commits before the ack"),
    Step("archive-stamp", 10, FEATURE, "XEP-0313: archives what the user sends, stamped for the sent carbon"),
    Step("presence", 0, FEATURE, "RFC 6121: broadcasts, subscriptions, probes (roster work in the user's queue)"),
    Step("carbons-sent", 0, FEATURE, "XEP-0280: sent carbons to the sender's other resources"),
    Step("archive-unstamp", -10, FEATURE, "XEP-0313: removes the stamp before the message is routed"),
    Step("offline", -500, FEATURE, "XEP-0160: stores messages for a user with no available resource"),
    Step("delivery", -1_000, FEATURE, "RFC 6121 §8: the default rules (resources, errors)"),
)}

#: Event -> the steps that hook it, in the order they run.  tests/unit/test_chains.py
#: checks that a built server hooks exactly these.
CHAINS: dict[str, tuple[str, ...]] = {
    "message/bare": ("offline-hold", "blocking", "carbons", "archive", "offline", "delivery"),
    "message/full": ("blocking", "carbons", "archive", "delivery"),
    "message/host": ("privilege", "delivery"),
    "presence/bare": ("blocking", "pep", "presence", "delivery"),
    "presence/full": ("blocking", "push", "presence", "delivery"),
    "presence/generated-remote": ("blocking",),
    "iq-get/bare": ("blocking",),
    "iq-set/bare": ("blocking",),
    "iq-get/full": ("blocking",),
    "iq-set/full": ("blocking",),
    "iq-result/bare": ("blocking", "pep", "push"),
    "iq-result/full": ("blocking",),
    "iq-error/bare": ("blocking", "pep", "push"),
    "iq-error/full": ("blocking",),
    "iq/full": ("delivery",),
    "pre-message/host": ("blocking", "archive-stamp", "carbons-sent", "archive-unstamp"),
    "pre-message/bare": ("blocking", "archive-stamp", "carbons-sent", "archive-unstamp"),
    "pre-message/full": ("blocking", "archive-stamp", "carbons-sent", "archive-unstamp"),
    "pre-presence/host": ("blocking", "presence"),
    "pre-presence/bare": ("last-activity", "blocking", "pep", "presence"),
    "pre-presence/full": ("blocking", "presence"),
    "pre-iq/host": ("blocking",),
    "pre-iq/bare": ("blocking",),
    "pre-iq/full": ("blocking",),
}
