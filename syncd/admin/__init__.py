"""What an operator asks of an org: members and pins, tokens, history at a moment, the ledger read back, sources and
their unjoined identities, stored and held plans; loading and declaring the config.

Does not plan or apply on its own (it calls syncd.sync) and holds no HTTP or scheduling (docs/architecture.md,
"Layers").
"""
