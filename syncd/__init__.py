"""syncd: an identity provisioning sync daemon (SCIM 2.0 in, directories polled, one reconciled org state out)."""

__version__ = "0.1.0"
