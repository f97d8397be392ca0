"""Administration of a running server: the local admin socket and its commands.

The server listens on a UNIX socket (``[server] admin_socket``, mode 0600, no
network port) speaking Twisted's AMP; the ``fedxmpp`` command connects to it for
what only the running process can do, such as ending a deleted account's
sessions.  :mod:`~fedxmpp.admin.commands` defines what may be asked,
:mod:`~fedxmpp.admin.server` answers it, :mod:`~fedxmpp.admin.client` asks.
"""
