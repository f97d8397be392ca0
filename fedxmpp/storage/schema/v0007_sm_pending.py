"""Stanzas queued for hibernating stream-management sessions (XEP-0198), so that a
server that dies while a session hibernates still finds what it acknowledged."""

_TABLE = """
    CREATE TABLE sm_pending (
        id {id},
        resume_id TEXT NOT NULL,
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        resource TEXT NOT NULL,
        stanza TEXT NOT NULL,
        stored_ts BIGINT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """
_INDEX = "CREATE INDEX sm_pending_session ON sm_pending (resume_id, id)"

STATEMENTS = (_TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"), _INDEX)

STATEMENTS_BY_ENGINE = {
    "postgres": (_TABLE.format(id="BIGSERIAL PRIMARY KEY"), _INDEX),
}
