"""XEP-0045 multi-user chat: an in-process service on a domain of its own.

* :mod:`~fedxmpp.muc.service` — the route for the service's domain: rooms by name,
  who may create them, the service's disco, persistence of rooms;
* :mod:`~fedxmpp.muc.room` — one room's state machine (occupants, presence,
  messages, the admin and owner protocols);
* :mod:`~fedxmpp.muc.affiliations` — affiliations, roles and what each may do;
* :mod:`~fedxmpp.muc.roomconfig` — a room's configuration and its XEP-0004 forms;
* :mod:`~fedxmpp.muc.history` — the messages a joining occupant is sent;
* :mod:`~fedxmpp.muc.avatar` — the room's vCard and the avatar hash it announces;
* :mod:`~fedxmpp.muc.stanzas` — namespaces and the elements rooms send.
"""
