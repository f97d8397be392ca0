"""Server-to-server federation (RFC 6120, XEP-0220, XEP-0178, XEP-0368).

* :mod:`~fedxmpp.s2s.resolver` — where a domain's XMPP service is: SRV records
  (``_xmpps-server`` and ``_xmpp-server``) or the domain itself on 5269.
* :mod:`~fedxmpp.s2s.outgoing` — the router's default route: one bounded queue
  per remote domain, the streams we initiate, retries and bounces.
* :mod:`~fedxmpp.s2s.incoming` — the streams remote servers open to us: STARTTLS,
  SASL EXTERNAL, dialback, and the checks on every stanza they send.
* :mod:`~fedxmpp.s2s.dialback` — XEP-0185 keys and the dialback wire format.
* :mod:`~fedxmpp.s2s.service` — what the application builds and starts.
"""
