"""XEP-0357: Push Notifications — waking a phone whose client the OS stopped.

**Registrations.**  A client sends ``<enable xmlns='urn:xmpp:push:0' jid node/>``
(to its own bare JID) with its app server's JID, the node the app server gave
it and, optionally, a ``pubsub#publish-options`` form (a secret, a token...);
``<disable jid [node]/>`` removes that registration (every node of that app
server without 'node').  Registrations are stored per account
(``storage.push``), so they outlive the session and a restart; enabling the
same app server and node again replaces its options (§5).  An account keeps
``[push] max_devices`` registrations, the oldest going first.  The session that
enabled a registration is its *device*: while it is bound (connected or
hibernating) offline wake-ups skip that registration.  Another client's request
is ``<not-allowed/>``; the app server may not be the account itself.

**What wakes a device** (:func:`.summary.waking`): a chat or normal message
with a body, an end-to-end encrypted payload or a call proposal, and received
carbons of those; a group chat message only when it mentions the user's
nickname in that room (as word in the body, or a XEP-0372 mention reference),
the nickname being learnt from the room's self-presence (status 110) to the
session.  Never chat states, receipts, markers, headlines, errors, subjects,
or the user's own sent carbons.

**When.**  (1) A message committed to offline storage (``offline/stored``) wakes
every device of the account that has no session; a message that a device's
own session never acknowledged is not pushed again when it lands there.
(2) A stream-managed session with push enabled that hibernates (XEP-0198;
``c2s/hibernating``) stays resumable for ``[push] hibernation_timeout`` (72 h by
default) instead of ``[c2s] sm_resume_timeout``, as Prosody's mod_cloud_notify
does, and its device is woken for what it had not acknowledged; then for each
waking stanza queued for it (``c2s/hibernating-queued``), once committed.  A
resumption (``c2s/resumed``) or a new enable starts the device's count again.

**The notification** (§7) is a pubsub publish from the user's bare JID to the app
server, routed like any stanza (to a component, or over s2s), carrying a
``urn:xmpp:push:summary`` form: ``message-count`` (the messages the device was
woken for since its count started), ``last-message-sender`` (unless
``[push] include_sender = false``) and ``last-message-body`` only with
``[push] include_body = true`` — an operator's choice, not the client's: the
XEP's security considerations ask for no in-band control over what the
notification reveals, and the body goes to a third party (Google, Apple).  The
client's publish options go back as ``<publish-options/>``.

**Storms and failures.**  One notification per device is in flight at a time
and at most one per ``[push] min_interval`` seconds; what arrives meanwhile is
counted into the next.  An error of type 'wait', or an app server that could not
be reached (``remote-server-not-found``/``-timeout``), or no answer within
``[push] reply_timeout``, is temporary: tried again after ``retry_delay``
seconds, doubling, at most ``max_attempts`` times.  Any other error disables
the registration (§7.1), in storage too.

**Disco**: the account's disco#info lists ``urn:xmpp:push:0`` while ``[push]
enabled``.
"""

from __future__ import annotations

from fedxmpp.features.push.service import Push
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext


def register(hooks: Hooks, ctx: ServerContext) -> None:
    if ctx.config.push.enabled:
        Push(ctx).register(hooks)
