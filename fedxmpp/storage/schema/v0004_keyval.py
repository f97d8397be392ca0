"""Per-user key/value documents (Prosody's keyval shape): vCards, private XML,
blocking lists, last activity... ``store`` names the feature, ``item_key`` the document
within it ('' when a store holds one document per user)."""

_TABLE = """
    CREATE TABLE keyval (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        store TEXT NOT NULL,
        item_key TEXT NOT NULL,
        value {blob} NOT NULL,
        PRIMARY KEY (domain, username, store, item_key),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """

STATEMENTS = (_TABLE.format(blob="BLOB"),)

STATEMENTS_BY_ENGINE = {
    "postgres": (_TABLE.format(blob="BYTEA"),),
}
