"""An SMS gateway: a XEP-0114 component bridging XMPP users to an HTTP SMS API."""
