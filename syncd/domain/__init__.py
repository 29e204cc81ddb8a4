"""The domain: pure decisions over plain values (the planner in ``reconcile/``, identity matching keys).

Does not do I/O of any kind: no store, no network, no clock reads; time and inputs come in as arguments
(docs/architecture.md, "Layers").
"""
