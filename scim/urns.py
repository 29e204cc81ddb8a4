"""The schema URNs the endpoint names in code (RFC 7643 §8.7.1, §4.3)."""

CORE_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
