"""Accounts and their SCRAM credentials (one row per hash: 'sha-1', 'sha-256')."""

STATEMENTS = (
    """
    CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        PRIMARY KEY (domain, username)
    )
    """,
    """
    CREATE TABLE scram_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash_name TEXT NOT NULL,
        salt BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (domain, username, hash_name),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """,
)
