"""What the SCIM endpoint serves: User (core + enterprise extension) and Group, and what it tolerates.

The models are scim2-models' own, except the enterprise ``manager``: RFC 7643 §4.3 marks its ``$ref`` required, but
Microsoft Entra sends ``{"value": id}`` alone, or by default a bare id string ("Known issues and resolutions with
SCIM 2.0 protocol compliance of the Microsoft Entra user provisioning service"), so our Manager accepts both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import email_validator
from pydantic import Field, model_validator
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    ETag,
    Extension,
    External,
    Filter,
    Group,
    Mutability,
    Patch,
    Reference,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

if TYPE_CHECKING:
    from scim2_models import User as _User  # noqa: F401

# Directories hold addresses in special-use domains (AD's "corp.local", Okta's documented "okta.local"); refusing them
# would stop provisioning of real users, and syncd never sends mail to them. RFC 6761 names; email-validator's list.
email_validator.SPECIAL_USE_DOMAIN_NAMES[:] = [
    name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES if name not in ("local", "test", "internal")
]

ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_RESULTS = 1000
MAX_BULK_OPERATIONS = 1000

TOLERANT_POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""The IdP tolerance policy (docs/architecture.md, "Peers").

- ``unknown=ignore``: Entra lists an extra group schema URN
  (``http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group``) and Okta sends attributes of its own;
  both are dropped instead of refused.
- ``remove_value_as_filter=apply``: Entra removes members with ``{"op": "Remove", "path": "members", "value":
  [{"value": id}]}``; only the listed entries are removed, never the whole list.
- ``unmatched_path_filter=create``: Entra's ``Add`` on ``emails[type eq "work"].value`` creates the entry.
"""


class Manager(ComplexAttribute):
    """The enterprise ``manager`` (RFC 7643 §4.3) with an optional ``$ref``."""

    value: Annotated[str | None, CaseExact.true] = None
    ref: Annotated[Reference[User] | None, Mutability.read_write] = Field(  # type: ignore[type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None

    @model_validator(mode="before")
    @classmethod
    def _bare_id(cls, value: Any) -> Any:
        """Entra's default PATCH sends the manager as a bare id string; reference attributes may also come as a
        one-entry list ``[{"value": id, "$ref": ...}]``, as Entra sends reference values: the entry is the manager."""
        if isinstance(value, list):
            value = value[0] if value else {}
        if isinstance(value, str):
            return {"value": value}
        return value


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
