"""``policy.scim_guard_window`` is validated like the other policy keys, and its migration is idempotent."""

from __future__ import annotations

import pytest

from syncd import config
from syncd.store import migrations


def org_with(window: object) -> dict:
    return {"orgs": [{"slug": "acme", "policy": {"scim_guard_window": window}}]}


@pytest.mark.parametrize("window", ["1m", "1h", "7d"])
def test_a_window_in_range_is_accepted(window):
    assert config.parse(org_with(window)).orgs[0].policy.scim_guard_window == window


@pytest.mark.parametrize(("window", "said"), [("30s", "1m to 7d"), ("8d", "1m to 7d"), ("soon", "interval"), (60, "")])
def test_a_window_out_of_range_or_not_an_interval_is_one_error_naming_the_key(window, said):
    with pytest.raises(config.ConfigError) as error:
        config.parse(org_with(window))
    assert "scim_guard_window" in str(error.value) and said in str(error.value)


def test_the_held_removals_migration_can_run_again(store):
    step = next(m for m in migrations.MIGRATIONS if m.__name__ == "_held_removals")
    step(store)
    step(store)
    assert store.table_exists("held_removal")
    names = [index.name for index in store.get_indexes("ledger_entry")]
    assert names.count("ledger_entry_org_id_action_at") == 1  # the model's own name: never a second copy
