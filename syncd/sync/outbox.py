"""Writing webhook events into the outbox, in the transaction of the change they report (docs/architecture.md,
"Webhooks"). Delivery is :mod:`syncd.service.webhooks`.

Every ledgered change has an event: :func:`syncd.sync.ledger.append` writes one through :func:`announce_change`, and the
apply path writes its events in bulk with the same payload (:func:`change_payload`). Each row gets a random
``message_id`` (the ``webhook-id``) when it is written, and its target as ``order_key`` so that one member's events
reach receivers in ledger order.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from syncd.clock import iso
from syncd.store.models import Organization, OutboxEvent, new_message_id


def change_payload(
    slug: str, *, action: str, target: str, before: Any, after: Any, reason: str, at: datetime, seq: int
) -> str:
    """The ``data`` of a change event: what the ledger entry says, and its sequence number in the org's chain."""
    return json.dumps(
        {
            "org": slug,
            "action": action,
            "target": target,
            "before": before,
            "after": after,
            "reason": reason,
            "at": iso(at),
            "seq": seq,
        },
        sort_keys=True,
        default=str,
    )


def announce_change(
    org_id: int, *, action: str, target: str, before: Any, after: Any, reason: str, at: datetime, seq: int
) -> OutboxEvent:
    """The event of one ledgered change; call inside the transaction that appends the entry."""
    slug = Organization.select(Organization.slug).where(Organization.id == org_id).scalar()
    payload = change_payload(
        slug, action=action, target=target, before=before, after=after, reason=reason, at=at, seq=seq
    )
    return enqueue(org_id, action, payload, at=at, order_key=target)


def enqueue(org_id: int, event_type: str, payload: str, *, at: datetime, order_key: str | None) -> OutboxEvent:
    """One outbox row, due at once, with its message id fixed now (so every retry carries the same one)."""
    return OutboxEvent.create(
        org=org_id,
        event_type=event_type,
        payload=payload,
        created_at=at,
        next_attempt_at=at,
        message_id=new_message_id(),
        order_key=order_key,
    )
