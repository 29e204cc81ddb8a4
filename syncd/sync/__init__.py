"""Keeping the store in step with the directories: stage a read, gather the inputs, plan, guard, apply, ledger.

Does not read a directory (connectors do), speak HTTP (scim/, service/) or wire config to processes
(docs/architecture.md, "Layers").
"""
