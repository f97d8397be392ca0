"""XEP-0045 persistent rooms and room archives (XEP-0313 on the room JID).

``muc_rooms``: one row per persistent room with its configuration, affiliations
and state (the subject, the salt of its occupant ids) as JSON objects (their
shape is the MUC service's).

``muc_archive``: the messages of every room in archive order (ts, id), as in
``archive``; ``archive_id`` carries ``ts``.  Rooms are not accounts: no foreign key.
"""

_ROOMS = """
    CREATE TABLE muc_rooms (
        domain TEXT NOT NULL,
        room TEXT NOT NULL,
        config TEXT NOT NULL,
        affiliations TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (domain, room)
    )
    """
_ARCHIVE = """
    CREATE TABLE muc_archive (
        id {id},
        domain TEXT NOT NULL,
        room TEXT NOT NULL,
        archive_id TEXT NOT NULL,
        ts BIGINT NOT NULL,
        stanza TEXT NOT NULL
    )
    """
_INDEX = "CREATE INDEX muc_archive_by_time ON muc_archive (domain, room, ts, id)"

STATEMENTS = (_ROOMS, _ARCHIVE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"), _INDEX)

STATEMENTS_BY_ENGINE = {
    "postgres": (_ROOMS, _ARCHIVE.format(id="BIGSERIAL PRIMARY KEY"), _INDEX),
}
