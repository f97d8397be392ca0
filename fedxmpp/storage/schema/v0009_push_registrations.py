"""XEP-0357 push registrations: per account, the app servers (JID and node) that
clients asked the server to wake them through, with their publish options."""

_TABLE = """
    CREATE TABLE push_registrations (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        options TEXT NOT NULL,
        enabled_ts BIGINT NOT NULL,
        PRIMARY KEY (domain, username, service, node),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """

STATEMENTS = (_TABLE,)
