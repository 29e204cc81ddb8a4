"""The shared kernel below every layer: the two error types, settings parsing and secret reading, redaction.

Does not import anything but the standard library, so connectors, the store, the config loader and the service may
all import it (docs/architecture.md, "Layers").
"""
