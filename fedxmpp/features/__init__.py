"""Server features, one module per XEP, each with ``register(hooks, ctx)``.

``ENABLED`` is the list that app.py registers, in order.
"""

from fedxmpp.features import (
    blocking,
    caps,
    carbons,
    disco,
    extdisco,
    last,
    mam,
    pep,
    ping,
    private,
    push,
    register,
    time,
    vcard,
    version,
)

ENABLED = (ping, disco, caps, version, time, last, vcard, private, blocking, register, carbons, mam, pep,
           extdisco, push)
