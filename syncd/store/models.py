"""The persistent model (docs/architecture.md, "The model"). Every row but the schema version belongs to one org.

JSON values are stored as text so that SQLite and PostgreSQL share one schema; times are naive UTC.
"""

from __future__ import annotations

import secrets

import peewee

from syncd.store.db import database


def new_message_id() -> str:
    """A Standard Webhooks message id: ``msg_`` and 128 random bits, unique across messages and stores."""
    return "msg_" + secrets.token_hex(16)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Organization(BaseModel):
    """A tenant. ``policy`` holds the org's policy table (grace days, guard thresholds) as JSON."""

    slug = peewee.CharField(max_length=63, unique=True)
    name = peewee.CharField()
    domains = peewee.TextField(default="[]")
    match_on = peewee.CharField(max_length=16, default="email")
    status = peewee.CharField(max_length=16, default="active")
    policy = peewee.TextField(default="{}")
    created_at = peewee.DateTimeField()


class Token(BaseModel):
    """An org-scoped bearer token, stored only as its SHA-256 (the token itself has 256 random bits)."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    scope = peewee.CharField(max_length=16)
    token_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    description = peewee.CharField(default="")
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)


class Source(BaseModel):
    """A directory of an org, as configured (the SCIM endpoint of an org is the source ``scim:<slug>``).

    ``cursor`` moves only in the transaction that applies what it produced. ``lease_owner``/``lease_until`` let
    one replica at a time poll the source.
    """

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    name = peewee.CharField(unique=True)
    kind = peewee.CharField(max_length=16)
    precedence = peewee.IntegerField(default=0)
    cursor = peewee.TextField(null=True)
    last_full_at = peewee.DateTimeField(null=True)
    last_run_at = peewee.DateTimeField(null=True)
    last_success_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    last_notes = peewee.TextField(null=True)  # what the last read could not see, one line each (e.g. deletions)
    consecutive_failures = peewee.IntegerField(default=0)
    lease_owner = peewee.CharField(null=True)
    lease_until = peewee.DateTimeField(null=True)


class Identity(BaseModel):
    """A person as one source sees them, keyed by that source's stable id (``key``).

    ``match_key`` is the folded value of the org's ``match_on`` attribute (syncd/domain/folding.py); identities of
    every source with the same match key are one member. ``*_lower`` columns hold the folded values, and
    ``unique_name`` the folded userName where the source demands uniqueness (SCIM, RFC 7643 §4.1.1) and NULL
    elsewhere, so the database enforces it without a partial index. ``resource`` keeps the full SCIM resource (SCIM
    source) or extra attributes (JSON). ``version`` feeds weak ETags.
    """

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    source = peewee.ForeignKeyField(Source, on_delete="CASCADE")
    key = peewee.TextField()
    user_name = peewee.TextField()
    user_name_lower = peewee.TextField()
    unique_name = peewee.TextField(null=True)
    email = peewee.TextField(null=True)
    email_lower = peewee.TextField(null=True)
    external_id = peewee.TextField(null=True)
    display_name = peewee.TextField(null=True)
    given_name = peewee.TextField(null=True)
    family_name = peewee.TextField(null=True)
    active = peewee.BooleanField(default=True)
    department = peewee.TextField(null=True)
    title = peewee.TextField(null=True)
    employee_number = peewee.TextField(null=True)
    manager_key = peewee.TextField(null=True)
    match_key = peewee.TextField(null=True)
    resource = peewee.TextField(default="{}")
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        indexes = (
            (("source", "key"), True),
            (("source", "unique_name"), True),
            (("source", "user_name_lower"), False),
            (("source", "external_id"), False),
            (("source", "email_lower"), False),
            (("org", "match_key"), False),
        )


class DirectoryGroup(BaseModel):
    """A group as one source sees it. ``unique_name`` as on :class:`Identity`, for SCIM displayName uniqueness."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    source = peewee.ForeignKeyField(Source, on_delete="CASCADE")
    key = peewee.TextField()
    display_name = peewee.TextField()
    display_name_lower = peewee.TextField()
    unique_name = peewee.TextField(null=True)
    external_id = peewee.TextField(null=True)
    resource = peewee.TextField(default="{}")
    version = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        indexes = (
            (("source", "key"), True),
            (("source", "unique_name"), True),
            (("source", "display_name_lower"), False),
            (("source", "external_id"), False),
        )


class GroupMember(BaseModel):
    """One direct member of a directory group: a row each, so adding or removing one never rewrites the list."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    source = peewee.ForeignKeyField(Source, on_delete="CASCADE")
    group = peewee.ForeignKeyField(DirectoryGroup, on_delete="CASCADE")
    member_key = peewee.TextField()
    member_kind = peewee.CharField(max_length=8, default="User")
    # What a SCIM client sent with the member (RFC 7643 §4.2), read back as written; NULL: not sent.
    display = peewee.TextField(null=True)
    ref = peewee.TextField(null=True)
    member_type = peewee.TextField(null=True)

    class Meta:
        indexes = (
            (("group", "member_key"), True),
            (("source", "member_key"), False),
        )


class Member(BaseModel):
    """The person in the organization, joined from every identity whose match key is ``match_key``."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    match_key = peewee.TextField()
    email = peewee.TextField(null=True)
    user_name = peewee.TextField(null=True)
    display_name = peewee.TextField(null=True)
    status = peewee.CharField(max_length=16, default="active")
    role = peewee.CharField(max_length=16, default="member")
    pinned = peewee.BooleanField(default=False)
    suspended_at = peewee.DateTimeField(null=True)
    deprovisioned_at = peewee.DateTimeField(null=True)
    transfer_to = peewee.TextField(null=True)
    manager = peewee.TextField(null=True)  # the manager's email, as the top source names them
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("org", "match_key"), True), (("org", "status"), False))


class Team(BaseModel):
    """A team of an org; ``parent`` nests teams (department → team)."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    slug = peewee.TextField()
    name = peewee.TextField()
    parent = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
    created_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("org", "slug"), True),)


class TeamMember(BaseModel):
    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    team = peewee.ForeignKeyField(Team, on_delete="CASCADE")
    member = peewee.ForeignKeyField(Member, on_delete="CASCADE")
    role = peewee.CharField(max_length=16, default="member")

    class Meta:
        indexes = ((("team", "member"), True), (("org", "member"), False))


class Plan(BaseModel):
    """A computed plan. Held plans keep their actions so that ``syncd approve`` applies exactly them.

    ``fingerprint`` digests every input the plan was computed from; approval re-checks it.
    """

    id = peewee.CharField(primary_key=True, max_length=36)
    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    source = peewee.ForeignKeyField(Source, null=True, on_delete="SET NULL")
    created_at = peewee.DateTimeField()
    status = peewee.CharField(max_length=16)
    fingerprint = peewee.CharField(max_length=64)
    summary = peewee.TextField(default="{}")
    actions = peewee.TextField(default="[]")
    cursor = peewee.TextField(null=True)
    decided_at = peewee.DateTimeField(null=True)


class LedgerEntry(BaseModel):
    """One append-only ledger entry; ``hash`` is SHA-256 over the canonical encoding of the others and prev_hash."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    seq = peewee.BigIntegerField()
    at = peewee.DateTimeField()
    actor = peewee.TextField()
    action = peewee.CharField(max_length=64)
    target = peewee.TextField()
    before = peewee.TextField(null=True)
    after = peewee.TextField(null=True)
    reason = peewee.TextField(default="")
    prev_hash = peewee.CharField(max_length=64)
    hash = peewee.CharField(max_length=64)

    class Meta:
        indexes = (
            (("org", "seq"), True),
            (("org", "at"), False),
            (("org", "target"), False),
            (("org", "action", "at"), False),
        )


class OutboxEvent(BaseModel):
    """A webhook event written in the same transaction as the change it reports, delivered after commit.

    ``message_id`` is the Standard Webhooks ``webhook-id``, random and fixed when the row is written (unique across
    stores); ``order_key`` (the ledger target, e.g. ``member:<key>``) keeps one target's events in order."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    event_type = peewee.CharField(max_length=64)
    payload = peewee.TextField()
    created_at = peewee.DateTimeField()
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    message_id = peewee.CharField(max_length=64, null=True, unique=True, default=new_message_id)
    order_key = peewee.TextField(null=True)

    class Meta:
        indexes = ((("delivered_at", "next_attempt_at"), False), (("org", "order_key"), False))


class PlanBasis(BaseModel):
    """What the org's last whole-org plan was computed under (a digest of rules, policy, domains, match key and
    source precedences). While it still matches, a source run plans only the members its read touched; when the
    config changes, the next run plans the whole org."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE", unique=True)
    fingerprint = peewee.CharField(max_length=64)
    planned_at = peewee.DateTimeField()


class HeldRemoval(BaseModel):
    """One member's suspension or deprovision that a SCIM write implied while the org's SCIM guard was tripped: the
    member's actions wait in the held plan ``plan`` until ``syncd approve`` or ``syncd reject`` (syncd/sync/held.py)."""

    org = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    plan = peewee.ForeignKeyField(Plan, on_delete="CASCADE")
    match_key = peewee.TextField()
    actions = peewee.TextField(default="[]")
    created_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("plan", "match_key"), True), (("org", "match_key"), False))


ALL_MODELS: tuple[type[BaseModel], ...] = (
    Organization,
    Token,
    Source,
    Identity,
    DirectoryGroup,
    GroupMember,
    Member,
    Team,
    TeamMember,
    Plan,
    LedgerEntry,
    OutboxEvent,
    PlanBasis,
    HeldRemoval,
)
