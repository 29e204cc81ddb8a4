"""A reload takes effect between two housekeeping runs of an org, for the scheduler and SCIM at once: an org
housekept with the old rules never commits after a SCIM write made with the new ones (a race seen in
tests/service/test_scim_rules_in_serve.py, where a housekeeping child started before SIGHUP demoted the people SCIM
had just promoted under the reloaded rules)."""

from __future__ import annotations

import threading
import time

from syncd import config as config_module
from syncd.admin import shell
from syncd.service import scheduler as scheduler_module
from syncd.service import serve

CONFIG = """
[database]
url = "{url}"

[[orgs]]
slug = "acme"
name = "Acme"
domains = ["acme.com"]
[orgs.policy]
grace_days = {grace}
"""


def test_a_reload_waits_for_the_housekeeping_run_in_progress_and_then_applies(
    sqlite_store, sqlite_url, write_config, monkeypatch
):
    """``housekeep_org`` is replaced by one that records the config it was given and stays open until the test lets
    it end, and runs in this process: what is checked is when the reload's swap happens relative to a housekeeping
    run, not the planning, which the serve tests cover."""
    path = write_config(CONFIG.format(url=sqlite_url, grace=7))
    old = config_module.load(str(path))
    shell.declare(old)
    service = serve.Service(str(path), old, "127.0.0.1:8080", None)  # never started: nothing listens
    service.scheduler.isolate = False
    monkeypatch.setattr(serve, "SWAP_WAIT_SECONDS", 0.05, raising=False)
    started, finish, seen = threading.Event(), threading.Event(), []

    def housekeep_org(config, name, **_):
        seen.append(config)
        started.set()
        assert finish.wait(30)

    monkeypatch.setattr(scheduler_module, "housekeep_org", housekeep_org)
    running = threading.Thread(target=service.scheduler.housekeep)
    running.start()
    assert started.wait(30)

    path.write_text(CONFIG.format(url=sqlite_url, grace=9))
    assert service.reload()
    assert service.state.config is old and service.scheduler.config is old  # not while the old-rules run is open

    finish.set()
    running.join(30)
    deadline = time.monotonic() + 30
    while service.state.config is old and time.monotonic() < deadline:
        time.sleep(0.02)
    new = service.state.config
    assert new is not old and service.scheduler.config is new and service.config is new
    assert new.orgs[0].policy.grace_days == 9
    assert seen == [old]
