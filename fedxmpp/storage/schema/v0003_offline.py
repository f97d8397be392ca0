"""Offline messages (XEP-0160): serialised stanzas per user, oldest first by id."""

_TABLE = """
    CREATE TABLE offline_messages (
        id {id},
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        stanza TEXT NOT NULL,
        stored_ts BIGINT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """
_INDEX = "CREATE INDEX offline_messages_owner ON offline_messages (domain, username, id)"

STATEMENTS = (_TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"), _INDEX)

STATEMENTS_BY_ENGINE = {
    "postgres": (_TABLE.format(id="BIGSERIAL PRIMARY KEY"), _INDEX),
}
