"""fedxmpp: a federating XMPP server on Twisted."""

__version__ = "0.1.0"
