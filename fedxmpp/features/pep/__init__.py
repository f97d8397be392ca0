"""XEP-0163: Personal Eventing Protocol — every account a pubsub service on its
bare JID (``http://jabber.org/protocol/pubsub``), enough for avatars (XEP-0084),
bookmarks (XEP-0402), OMEMO device lists and bundles, and nicknames (XEP-0172).

**Requests** (XEP-0060 to ``user@domain``; see :mod:`.service`):

* the owner publishes (a node that does not exist is created, configured by the
  request's ``<publish-options/>``; on an existing node each option must match
  the configuration, else ``<conflict/>`` with ``<precondition-not-met/>``),
  retracts, creates (with ``<configure/>``), configures (get and submit the
  ``pubsub#node_config`` form), deletes and purges nodes, and reads and sets
  affiliations (member, outcast);
* anyone the node's access model lets in retrieves items — all, by id, or the
  newest ``max_items``: 'presence' (the default: the owner and contacts with a
  'from' or 'both' subscription; others get ``<not-authorized/>`` with
  ``<presence-subscription-required/>``), 'open' (anyone), 'whitelist' (the
  owner and members; others get ``<not-allowed/>`` with ``<closed-node/>``); an
  outcast gets ``<forbidden/>``;
* explicit subscriptions are not offered (``<feature-not-implemented/>`` with
  ``<unsupported feature='subscribe'/>``): contacts subscribe through presence
  and "+notify", as XEP-0163 intends.

The node configuration fields honoured are in :mod:`.nodeconfig`: access_model,
persist_items, max_items (a number up to ``[pep] max_items``, or 'max' for that
limit; a node that does not persist items keeps its last one only),
send_last_published_item, deliver_notifications, deliver_payloads,
notify_retract, notify_delete, notify_config, publish_model ('publishers'),
title and type.  Limits: ``[pep] max_nodes`` per account (``<policy-violation/>``),
``[pep] max_item_size`` bytes per payload (``<not-acceptable/>`` with
``<payload-too-big/>``).

**Notifications** (XEP-0163 §4.3) go, from the owner's bare JID as headline
messages, to the available resources with a non-negative priority that sent the
owner's bare JID presence with XEP-0115 caps whose features include
``<node>+notify`` and that the node's access model admits — the owner's own
resources included (see :mod:`.interest` for how caps become features).  When
such a resource becomes available (or its caps add a +notify), it gets the
last item of each node it is interested in, with a XEP-0203 delay, unless the
node's send_last_published_item is not 'on_sub_and_presence'.  Notifications
pass the owner's sender-side events like the owner's own messages, so the
owner's blocklist (XEP-0191) stops them.

**Disco**: the account's disco#info gets the identity pubsub/pep and the
XEP-0060 features above.  Items and nodes are kept by ``storage.pubsub``.
"""

from __future__ import annotations

from fedxmpp.features.pep.service import Pep
from fedxmpp.hooks import Hooks
from fedxmpp.im.context import ServerContext


def register(hooks: Hooks, ctx: ServerContext) -> None:
    Pep(ctx).register(hooks)
