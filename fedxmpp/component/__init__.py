"""External components (XEP-0114): gateways and services attached as separate processes.

* :mod:`~fedxmpp.component.service` — the listener factory;
* :mod:`~fedxmpp.component.context` — :class:`Components`, the registry, which knows the configured domains, the connected sessions and their routes;
* :mod:`~fedxmpp.component.handshake` — the stream handler from header to handshake;
* :mod:`~fedxmpp.component.session` — :class:`ComponentSession`, which validates what
  a component sends and hands it to the router;
* :mod:`~fedxmpp.component.privilege` — XEP-0356 privileged entity (roster, message).

A component domain is routed to its session while it is connected and to an
"unavailable" route (``<service-unavailable/>`` for iq and message) while it is not.
"""
