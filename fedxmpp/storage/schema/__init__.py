"""Numbered schema migrations.

Each migration is a module in this package named ``v<NNNN>_<name>.py`` (four
digits, starting at ``v0001``, no gaps) that defines:

``STATEMENTS``
    a sequence of single SQL statements (``?`` placeholders), run on every engine
    that has no override below;

``STATEMENTS_BY_ENGINE`` (optional)
    a mapping from an engine name (``"sqlite"``, ``"postgres"``) to the
    statements to run on that engine instead, for where dialects differ
    (``BLOB`` is ``BYTEA`` on PostgreSQL, for instance).

A new store adds its tables by adding the next module; nothing else changes.
Migrations already released are never edited: a change is a new migration.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

_MODULE_NAME = re.compile(r"^v(\d{4})_([a-z0-9_]+)$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    engine_statements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def statements_for(self, engine: str) -> tuple[str, ...]:
        return self.engine_statements.get(engine, self.statements)


def load_migrations(package: str = __name__) -> list[Migration]:
    """Every migration in *package*, in version order; ValueError if the numbering
    has a gap or a duplicate, or a module lacks ``STATEMENTS``."""
    pkg = importlib.import_module(package)
    found: dict[int, Migration] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        match = _MODULE_NAME.match(info.name)
        if match is None:
            continue
        version, name = int(match.group(1)), match.group(2)
        if version in found:
            raise ValueError(f"{package}: two migrations numbered {version}")
        module = importlib.import_module(f"{package}.{info.name}")
        statements = getattr(module, "STATEMENTS", None)
        if not isinstance(statements, Sequence) or isinstance(statements, str):
            raise ValueError(f"{package}.{info.name}: STATEMENTS must be a sequence of SQL strings")
        by_engine = getattr(module, "STATEMENTS_BY_ENGINE", {})
        found[version] = Migration(version, name, tuple(statements),
                                  {k: tuple(v) for k, v in by_engine.items()})
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{package}: migrations must be numbered 1, 2, 3... without gaps; found {versions}")
    return [found[v] for v in versions]
