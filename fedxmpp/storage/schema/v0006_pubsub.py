"""Personal eventing (XEP-0163): each user's pubsub nodes and their items.

A node row holds its configuration and affiliations as JSON objects of strings
(the XEP-0060 field values).  Items are ordered by ``id``, the order in which
they were (last) published; ``published_ts`` is in microseconds since the epoch.
Deleting an account deletes its nodes, and deleting a node its items.
"""

_NODES = """
    CREATE TABLE pubsub_nodes (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        node TEXT NOT NULL,
        config TEXT NOT NULL,
        affiliations TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        PRIMARY KEY (domain, username, node),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    )
    """
_ITEMS = """
    CREATE TABLE pubsub_items (
        id {id},
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        node TEXT NOT NULL,
        item_id TEXT NOT NULL,
        publisher TEXT NOT NULL,
        payload TEXT NOT NULL,
        published_ts BIGINT NOT NULL,
        FOREIGN KEY (domain, username, node) REFERENCES pubsub_nodes (domain, username, node) ON DELETE CASCADE
    )
    """
_INDEXES = (
    "CREATE UNIQUE INDEX pubsub_items_by_item_id ON pubsub_items (domain, username, node, item_id)",
    "CREATE INDEX pubsub_items_by_order ON pubsub_items (domain, username, node, id)",
)

STATEMENTS = (_NODES, _ITEMS.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"), *_INDEXES)

STATEMENTS_BY_ENGINE = {
    "postgres": (_NODES, _ITEMS.format(id="BIGSERIAL PRIMARY KEY"), *_INDEXES),
}
