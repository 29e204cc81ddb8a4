"""syncd: an identity provisioning sync daemon (SCIM 2.0 in, directories polled, one reconciled org state out).

The top holds the kernel every layer may use (config, clock, logs, counters); the layers are the subpackages
(docs/architecture.md, "Layers").
"""

__version__ = "0.1.0"
