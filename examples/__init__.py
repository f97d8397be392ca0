"""Example programs that use fedxmpp (importable so that the tests can reach them)."""
