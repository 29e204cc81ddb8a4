"""The store: peewee models, the database they live in (SQLite embedded, PostgreSQL for scale-out), migrations,
transactions, source leases and composed-once statements.

Does not import anything above it: peewee, its own modules and syncd.common's errors only (docs/architecture.md, "Layers").
"""

from syncd.store.db import database, open_database
from syncd.store.migrations import current_version, upgrade

__all__ = ["current_version", "database", "open_database", "upgrade"]
