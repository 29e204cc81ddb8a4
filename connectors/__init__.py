"""Directory connectors: protocol in, plain records out (docs/architecture.md, "Data flow" and "Layers").

Does not touch the store, Flask, the scheduler, the reconciler or syncd: protocol libraries, :mod:`connectors.interface`
and the shared kernel :mod:`syncd.common` only.
"""
