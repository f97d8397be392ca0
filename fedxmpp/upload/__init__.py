"""XEP-0363 HTTP upload (``[upload]``): slots handed out over XMPP, files put and
got over the HTTP listener.

* :mod:`.slots`: the signed slot tokens (no slot table an attacker could fill);
* :mod:`.store`: the files on disk, who uploaded what, quotas and expiry;
* :mod:`.service`: the XMPP side (disco, slot requests) and the HTTP side (PUT, GET).
"""
