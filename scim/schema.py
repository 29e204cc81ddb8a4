"""What the SCIM endpoint serves: User (core + enterprise extension) and Group, and what it tolerates.

The models are scim2-models' own, except the enterprise ``manager``, which takes the shapes Entra sends
(:class:`scim.quirks.entra.Manager`); the tolerance policy is made of the IdPs' quirks (:mod:`scim.quirks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import email_validator
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Extension,
    External,
    Filter,
    Group,
    Patch,
    Reference,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from scim.quirks import entra, okta
from scim.quirks.entra import Manager
from scim.urns import ENTERPRISE_URN

if TYPE_CHECKING:
    from scim2_models import User as _User  # noqa: F401

# Directories hold addresses in special-use domains (AD's "corp.local", Okta's documented "okta.local"); refusing them
# would stop provisioning of real users, and syncd never sends mail to them. RFC 6761 names; email-validator's list.
email_validator.SPECIAL_USE_DOMAIN_NAMES[:] = [
    name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES if name not in ("local", "test", "internal")
]

MAX_RESULTS = 1000
MAX_BULK_OPERATIONS = 1000

TOLERANT_POLICY = ScimPolicy(
    unknown=okta.UNKNOWN_ATTRIBUTES,
    remove_value_as_filter=entra.REMOVE_VALUE,
    unmatched_path_filter=entra.UNMATCHED_PATH_FILTER,
)
"""The IdP tolerance policy (docs/architecture.md, "Peers"): unknown attributes (Okta's own, Entra's extra group
schema URN) are dropped, Entra's value-list member removal removes only the listed members, and Entra's ``Add`` on an
unmatched filtered path creates the entry (:mod:`scim.quirks.entra`, :mod:`scim.quirks.okta`)."""


class EnterpriseUser(Extension):
    """RFC 7643 §4.3, with the tolerant :class:`Manager`."""

    __schema__ = URN(ENTERPRISE_URN)

    employee_number: str | None = None
    cost_center: str | None = None
    organization: str | None = None
    division: str | None = None
    department: str | None = None
    manager: Manager | None = None


USER_TYPE = ResourceType.from_resource(User[EnterpriseUser])
GROUP_TYPE = ResourceType.from_resource(Group)

BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken,
    name="OAuth Bearer Token",
    description="A syncd token of scope 'scim' (syncd tokens create --org SLUG --scope scim)",
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
    primary=True,
)


def service_provider_config(max_body_bytes: int) -> ServiceProviderConfig:
    """What the endpoint announces (RFC 7643 §5); the bulk payload limit is the server's body limit."""
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=True, max_operations=MAX_BULK_OPERATIONS, max_payload_size=max_body_bytes),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[BEARER],
    )


def build_provider(max_body_bytes: int) -> ScimProvider:
    return ScimProvider(
        models=[User, EnterpriseUser, Group],
        resource_types=[USER_TYPE, GROUP_TYPE],
        config=service_provider_config(max_body_bytes),
        policy=TOLERANT_POLICY,
    )
