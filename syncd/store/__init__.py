"""The store: peewee models and the database they live in (SQLite embedded, PostgreSQL for scale-out).

It imports peewee and the model only; nothing above it (docs/architecture.md, "Layers").
"""

from syncd.store.db import database, open_database
from syncd.store.migrations import current_version, upgrade

__all__ = ["current_version", "database", "open_database", "upgrade"]
