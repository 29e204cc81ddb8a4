"""The SCIM 2.0 service provider (RFC 7643 / RFC 7644) that identity providers push users and groups to.

Does not import a connector: it uses the store, the domain and the sync entry point for SCIM writes
(docs/architecture.md, "Layers").

Built on scim2-server's service and handler layers and scim2-models; ours are the Flask integration
(:mod:`scim.web`), the storage over the org's SCIM source (:mod:`scim.storage`, with the hot statements written out
in :mod:`scim.statements`), filters compiled to SQL (:mod:`scim.filters`, the SQL forms in :mod:`syncd.store.dialect`), the IdP tolerance
policy (:mod:`scim.schema`), the member fast path (:mod:`scim.service`) and the reconciliation hook
(:mod:`scim.reconciliation`).
"""

from scim.web import create_app, create_blueprint, install

__all__ = ["create_app", "create_blueprint", "install"]
