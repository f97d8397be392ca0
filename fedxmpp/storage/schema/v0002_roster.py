"""Rosters (RFC 6121 §2): one row per contact, and a version counter per user (§2.6).

``groups_json`` is a JSON array of strings.  ``hidden`` marks a row that exists
only to remember a pending inbound subscription request (to present it again at
the next login); it is not shown to the user as a roster item.
"""

STATEMENTS = (
    """
    CREATE TABLE roster_items (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        contact TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL DEFAULT 'none'
            CHECK (subscription IN ('none', 'to', 'from', 'both')),
        ask SMALLINT NOT NULL DEFAULT 0,
        pending_in SMALLINT NOT NULL DEFAULT 0,
        approved SMALLINT NOT NULL DEFAULT 0,
        hidden SMALLINT NOT NULL DEFAULT 0,
        groups_json TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (domain, username, contact),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """,
    """
    CREATE TABLE roster_versions (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (domain, username),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """,
)
