"""The SCIM 2.0 service provider (RFC 7643 / RFC 7644) that identity providers push users and groups to.

Does not import a connector: it uses the store, the domain and the sync entry point for SCIM writes
(docs/architecture.md, "Layers").

Built on scim2-server's service and handler layers and scim2-models; ours, one job each:

- :mod:`scim.web`: the Flask integration (body limit, bearer token, tenant), with the hot reads answered from
  :mod:`scim.representation` (docs/architecture.md, "SCIM hot path");
- :mod:`scim.service`: our steps of scim2-server's service and handler (limits, quirks, the member fast path);
- :mod:`scim.resources`: scim2-server's storage step, resources in and out of rows, with projection
  (:mod:`scim.projection`, RFC 7644 §3.9), preconditions (:mod:`scim.preconditions`, §3.14) and member validation;
- :mod:`scim.storage`: the rows of the org's SCIM source only (hot statements in :mod:`scim.statements`, filters
  compiled to SQL by :mod:`scim.filters`, the SQL forms in :mod:`syncd.store.dialect`);
- :mod:`scim.reconciliation`: the write path's door to the reconciler;
- :mod:`scim.schema` and :mod:`scim.quirks` (``entra``, ``okta``): what is served and what each IdP needs beyond the
  RFCs.
"""

from scim.web import create_app, create_blueprint, install

__all__ = ["create_app", "create_blueprint", "install"]
