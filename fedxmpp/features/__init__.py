"""Server features, one module per XEP, each with ``register(hooks)``.

``ENABLED`` is the list that app.py registers, in order.
"""

from fedxmpp.features import ping

ENABLED = (ping,)
