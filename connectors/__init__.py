"""Directory connectors: protocol in, plain records out (see docs/architecture.md, "Data flow").

A connector never touches the store, Flask, the scheduler or the reconciler; it imports protocol libraries and
:mod:`connectors.interface` and the shared kernel :mod:`common` (errors, settings, secrets, redaction) only.
"""
