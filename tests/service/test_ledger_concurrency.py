"""Replicas serving SCIM for one org on PostgreSQL append to its ledger concurrently without deadlocking."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from syncd.store import open_database, upgrade
from syncd.store.models import Organization, Token
from syncd.store.tx import write_transaction
from syncd.sync import ledger, pipeline


@pytest.fixture
def postgres_store(postgres_url):
    db = open_database(postgres_url)
    upgrade()
    db.execute_sql('TRUNCATE "organization" RESTART IDENTITY CASCADE')
    yield db
    db.close()


@pytest.mark.parametrize("lock_first", [False, True], ids=["ledger-head", "pipeline-lock-org"])
def test_writers_that_insert_org_rows_then_lock_the_org_never_deadlock(postgres_store, lock_first):
    """A write inserts rows referencing the org (PostgreSQL takes FOR KEY SHARE on the org row for the foreign key)
    and then locks the org (``pipeline.lock_org``, the ledger head). A head lock that conflicts with KEY SHARE (FOR UPDATE) deadlocks two such
    writers; FOR NO KEY UPDATE still serializes appenders but lets foreign-key inserts through."""
    org = Organization.create(slug="acme", name="Acme", created_at=datetime(2026, 1, 1))
    both_inserted = threading.Barrier(2, timeout=10)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            with write_transaction():
                Token.create(
                    org=org, scope="scim", token_hash=f"{number:064d}", prefix="x", created_at=datetime(2026, 1, 1)
                )
                both_inserted.wait()
                if lock_first:
                    pipeline.lock_org(org.id)
                ledger.append(org.id, actor=f"token:{number}", action="token.create", target=f"token:{number}")
        except BaseException as error:
            failures.append(error)
        finally:
            postgres_store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    assert [e.seq for e in ledger.LedgerEntry.select().order_by(ledger.LedgerEntry.seq)] == [1, 2]
