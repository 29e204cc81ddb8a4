"""What each identity provider sends that RFC 7643 / RFC 7644 do not (docs/architecture.md, "Peers"): one module per
IdP, each quirk with the vendor document it follows, so that a quirk is found, changed or dropped in one place."""
