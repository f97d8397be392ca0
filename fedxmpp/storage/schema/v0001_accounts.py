"""Accounts and their SCRAM credentials (one row per hash: 'sha-1', 'sha-256')."""

_ACCOUNTS = """
    CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        PRIMARY KEY (domain, username)
    )
    """
_CREDENTIALS = """
    CREATE TABLE scram_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash_name TEXT NOT NULL,
        salt {blob} NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key {blob} NOT NULL,
        server_key {blob} NOT NULL,
        PRIMARY KEY (domain, username, hash_name),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """

STATEMENTS = (_ACCOUNTS, _CREDENTIALS.format(blob="BLOB"))

STATEMENTS_BY_ENGINE = {
    "postgres": (_ACCOUNTS, _CREDENTIALS.format(blob="BYTEA")),
}
