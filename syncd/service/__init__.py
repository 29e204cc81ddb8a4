"""``syncd serve``: the HTTP app, the scheduler and its run processes, systemd notify, metrics, webhooks delivery.

Wires the parts together; holds no protocol or policy rules of its own (docs/architecture.md, "Layers").
"""
