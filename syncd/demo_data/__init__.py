"""The demo's HR export (``people.csv``), read by ``syncd demo``; data only, no code (docs/architecture.md)."""
