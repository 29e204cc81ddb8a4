"""config/syncd.example.toml is the reference for every key: it must load, and it must name every key there is."""

from __future__ import annotations

import dataclasses
import importlib
import re

from syncd import config
from tests.conftest import ROOT

EXAMPLE = ROOT / "config" / "syncd.example.toml"


def _documented_keys() -> set[str]:
    """Keys set or shown commented out (``# key = ...``), and sub-tables (``[orgs.policy]``), in the example."""
    text = EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.M)) | set(
        re.findall(r"^\[+\w+\.(\w+)\]+", text, flags=re.M)
    )


def test_example_config_loads():
    loaded = config.load(EXAMPLE)
    assert {source.kind for source in loaded.sources} >= {"file", "okta", "azure"}
    assert loaded.orgs[0].rules


def test_example_config_documents_every_key():
    documented = _documented_keys()
    settings = [
        config.DatabaseSettings,
        config.ServerSettings,
        config.LoggingSettings,
        config.Policy,
        config.Rule,
        config.OrgSettings,
        config.SourceSettings,
        config.WebhookSettings,
    ]
    settings += [importlib.import_module(f"connectors.{kind}").Settings for kind in config.SOURCE_KINDS]
    missing = {
        f"{cls.__module__}.{cls.__name__}.{field.name}"
        for cls in settings
        for field in dataclasses.fields(cls)
        if field.name not in documented and field.name != "connector"
    }
    assert not missing, f"undocumented keys: {sorted(missing)}"
