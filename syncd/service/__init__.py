"""``syncd serve``: the HTTP app, the scheduler and its run processes, systemd notify, metrics, webhook delivery.

Does not hold protocol or policy rules of its own: it wires the other layers together (docs/architecture.md,
"Layers").
"""
