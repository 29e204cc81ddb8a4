"""The SCIM 2.0 service provider (RFC 7643 / RFC 7644) that identity providers push users and groups to.

Built on scim2-server's service and handler layers and scim2-models; ours are the Flask integration
(:mod:`scim.web`), the peewee storage over the org's SCIM source (:mod:`scim.storage`), filters compiled to SQL
(:mod:`scim.filters`), the IdP tolerance policy (:mod:`scim.schema`) and the member fast path (:mod:`scim.service`).
"""

from scim.web import create_app, create_blueprint

__all__ = ["create_app", "create_blueprint"]
