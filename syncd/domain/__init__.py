"""The domain: pure decisions over plain values (the planner in ``reconcile/``, identity matching keys).

Does no I/O of any kind: no store, no network, no clock reads; time and inputs are passed in (docs/architecture.md, "Layers").
"""
