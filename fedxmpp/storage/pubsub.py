"""Personal eventing nodes and items kept in SQL: the :class:`~fedxmpp.storage.PubsubStore`
implementation.

A node's configuration and affiliations are JSON objects of strings; items are
serialised XML payloads, ordered by when they were (last) published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from fedxmpp.storage.database import Database, Transaction
from fedxmpp.storage.errors import ConstraintViolation, NoSuchAccount


@dataclass(frozen=True)
class PubsubNode:
    node: str
    #: XEP-0060 configuration field values by field name ("pubsub#access_model"...).
    config: dict[str, str] = field(default_factory=dict)
    #: Affiliations other than the owner's, by bare JID ("member", "outcast"...).
    affiliations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PubsubItem:
    item_id: str
    #: The full JID that published the item.
    publisher: str
    #: The payload element as serialised XML.
    payload: str
    #: Microseconds since the epoch.
    published: int


class SqlPubsubStore:
    """Nodes in ``pubsub_nodes``, items in ``pubsub_items``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def nodes(self, user: str, domain: str) -> list[PubsubNode]:
        return await self._db.run_interaction("pubsub nodes", _nodes_txn, user, domain)

    async def create_node(self, user: str, domain: str, node: PubsubNode, now: int) -> bool:
        return await self._db.run_interaction("create pubsub node", _create_txn, user, domain, node, now)

    async def update_node(self, user: str, domain: str, node: PubsubNode) -> bool:
        return await self._db.run_interaction("configure pubsub node", _update_txn, user, domain, node)

    async def delete_node(self, user: str, domain: str, node: str) -> bool:
        return await self._db.run_interaction("delete pubsub node", _delete_txn, user, domain, node)

    async def publish(self, user: str, domain: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        return await self._db.run_interaction("publish pubsub item", _publish_txn, user, domain, node, item,
                                              max_items)

    async def items(self, user: str, domain: str, node: str, *, item_ids: Sequence[str] | None = None,
                    last: int | None = None) -> list[PubsubItem]:
        return await self._db.run_interaction("get pubsub items", _items_txn, user, domain, node,
                                              None if item_ids is None else tuple(item_ids), last)

    async def last_items(self, user: str, domain: str) -> dict[str, PubsubItem]:
        return await self._db.run_interaction("last pubsub items", _last_items_txn, user, domain)

    async def retract(self, user: str, domain: str, node: str, item_id: str) -> bool:
        return await self._db.run_interaction("retract pubsub item", _retract_txn, user, domain, node, item_id)

    async def purge(self, user: str, domain: str, node: str) -> int:
        return await self._db.run_interaction("purge pubsub node", _purge_txn, user, domain, node)


def _node_from_row(row: tuple[Any, ...]) -> PubsubNode:
    return PubsubNode(str(row[0]), dict(json.loads(row[1])), dict(json.loads(row[2])))


def _item_from_row(row: tuple[Any, ...]) -> PubsubItem:
    return PubsubItem(str(row[0]), str(row[1]), str(row[2]), int(row[3]))


def _nodes_txn(txn: Transaction, user: str, domain: str) -> list[PubsubNode]:
    txn.execute("SELECT node, config, affiliations FROM pubsub_nodes WHERE domain = ? AND username = ?"
                " ORDER BY node", (domain, user))
    return [_node_from_row(row) for row in txn.fetchall()]


def _create_txn(txn: Transaction, user: str, domain: str, node: PubsubNode, now: int) -> bool:
    txn.execute("SELECT 1 FROM pubsub_nodes WHERE domain = ? AND username = ? AND node = ?",
                (domain, user, node.node))
    if txn.fetchone() is not None:
        return False
    try:
        txn.execute("INSERT INTO pubsub_nodes (domain, username, node, config, affiliations, created_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (domain, user, node.node, json.dumps(node.config, sort_keys=True),
                     json.dumps(node.affiliations, sort_keys=True), now))
    except ConstraintViolation:
        raise NoSuchAccount(user, domain) from None
    return True


def _update_txn(txn: Transaction, user: str, domain: str, node: PubsubNode) -> bool:
    txn.execute("UPDATE pubsub_nodes SET config = ?, affiliations = ? WHERE domain = ? AND username = ? AND node = ?",
                (json.dumps(node.config, sort_keys=True), json.dumps(node.affiliations, sort_keys=True),
                 domain, user, node.node))
    return txn.rowcount > 0


def _delete_txn(txn: Transaction, user: str, domain: str, node: str) -> bool:
    txn.execute("DELETE FROM pubsub_items WHERE domain = ? AND username = ? AND node = ?", (domain, user, node))
    txn.execute("DELETE FROM pubsub_nodes WHERE domain = ? AND username = ? AND node = ?", (domain, user, node))
    return txn.rowcount > 0


def _publish_txn(txn: Transaction, user: str, domain: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
    # Publishing an existing id replaces the item and makes it the newest.
    txn.execute("DELETE FROM pubsub_items WHERE domain = ? AND username = ? AND node = ? AND item_id = ?",
                (domain, user, node, item.item_id))
    try:
        txn.execute("INSERT INTO pubsub_items (domain, username, node, item_id, publisher, payload, published_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (domain, user, node, item.item_id, item.publisher, item.payload, item.published))
    except ConstraintViolation:
        raise LookupError(f"no pubsub node {node!r}") from None
    # A node holds at most the server's item limit (plus this one), so reading the ids is cheap.
    txn.execute("SELECT id, item_id FROM pubsub_items WHERE domain = ? AND username = ? AND node = ?"
                " ORDER BY id DESC", (domain, user, node))
    old = txn.fetchall()[max(max_items, 1):]
    if old:
        txn.execute("DELETE FROM pubsub_items WHERE domain = ? AND username = ? AND node = ? AND id <= ?",
                    (domain, user, node, old[0][0]))
    return [str(row[1]) for row in reversed(old)]


def _items_txn(txn: Transaction, user: str, domain: str, node: str, item_ids: tuple[str, ...] | None,
               last: int | None) -> list[PubsubItem]:
    sql = ("SELECT item_id, publisher, payload, published_ts FROM pubsub_items"
           " WHERE domain = ? AND username = ? AND node = ?")
    args: list[Any] = [domain, user, node]
    if item_ids is not None:
        if not item_ids:
            return []
        sql += f" AND item_id IN ({', '.join('?' * len(item_ids))})"
        args.extend(item_ids)
    sql += " ORDER BY id DESC"
    if last is not None:
        sql += " LIMIT ?"
        args.append(last)
    txn.execute(sql, args)
    return [_item_from_row(row) for row in reversed(txn.fetchall())]


def _last_items_txn(txn: Transaction, user: str, domain: str) -> dict[str, PubsubItem]:
    txn.execute("SELECT node, item_id, publisher, payload, published_ts FROM pubsub_items i"
                " WHERE domain = ? AND username = ? AND id = (SELECT MAX(id) FROM pubsub_items j"
                " WHERE j.domain = i.domain AND j.username = i.username AND j.node = i.node)",
                (domain, user))
    return {str(row[0]): _item_from_row(row[1:]) for row in txn.fetchall()}


def _retract_txn(txn: Transaction, user: str, domain: str, node: str, item_id: str) -> bool:
    txn.execute("DELETE FROM pubsub_items WHERE domain = ? AND username = ? AND node = ? AND item_id = ?",
                (domain, user, node, item_id))
    return txn.rowcount > 0


def _purge_txn(txn: Transaction, user: str, domain: str, node: str) -> int:
    txn.execute("DELETE FROM pubsub_items WHERE domain = ? AND username = ? AND node = ?", (domain, user, node))
    return txn.rowcount
