"""XEP-0045 persistent rooms: one row per room with its configuration,
affiliations and subject as JSON objects (their shape is the MUC service's)."""

STATEMENTS = (
    """
    CREATE TABLE muc_rooms (
        domain TEXT NOT NULL,
        room TEXT NOT NULL,
        config TEXT NOT NULL,
        affiliations TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (domain, room)
    )
    """,
)
