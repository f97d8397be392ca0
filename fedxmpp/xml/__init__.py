"""XML for XMPP: the safe stream parser, serialisation, namespaces, errors and JIDs."""
