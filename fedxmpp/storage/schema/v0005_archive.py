"""Message archives (XEP-0313): one row per archived message per user.

``id`` is the row's order of arrival and, with ``ts`` (microseconds since the
epoch), the archive's order: (ts, id).  ``archive_id`` is the unpredictable id
clients see (XEP-0359 stanza-id, RSM paging); it carries ``ts``, so it is found
through the (user, ts) index and needs none of its own.  ``with_jid`` is the other party's
bare JID and ``with_resource`` its resource ('' when none), for the 'with'
filter; ``outgoing`` says which way the message went.

Indexes: one to read an archive in order, which also carries the correspondent
so that the 'with' filter is answered from the index (a separate index by
correspondent would double the cost of archiving each message: its insertion
points are scattered, where the time index only appends), and one by time alone
for the retention purge.

``archive_prefs`` holds each user's preferences (XEP-0441): the default mode and
the JIDs always and never archived, as JSON arrays.
"""

_TABLE = """
    CREATE TABLE archive (
        id {id},
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        archive_id TEXT NOT NULL,
        ts BIGINT NOT NULL,
        with_jid TEXT NOT NULL,
        with_resource TEXT NOT NULL,
        outgoing SMALLINT NOT NULL,
        stanza TEXT NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """
_PREFS = """
    CREATE TABLE archive_prefs (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        default_mode TEXT NOT NULL,
        always_json TEXT NOT NULL,
        never_json TEXT NOT NULL,
        PRIMARY KEY (domain, username),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """
_INDEXES = (
    "CREATE INDEX archive_by_time ON archive (domain, username, ts, id, with_jid, with_resource)",
    "CREATE INDEX archive_purge ON archive (ts)",
)

STATEMENTS = (_TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"), *_INDEXES, _PREFS)

STATEMENTS_BY_ENGINE = {
    "postgres": (_TABLE.format(id="BIGSERIAL PRIMARY KEY"), *_INDEXES, _PREFS),
}
