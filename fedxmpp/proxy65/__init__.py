"""XEP-0065 SOCKS5 bytestreams proxy: a service at a domain of its own
(``[proxy65]``) that pairs two clients' SOCKS5 connections and relays between them.

* :mod:`.socks5` is the SOCKS5 side (RFC 1928 as XEP-0065 §6 uses it);
* :mod:`.relay` carries the bytes of one activated stream with flow control;
* :mod:`.service` is the XMPP side (disco, streamhost, activation) and the table
  of connections.
"""
