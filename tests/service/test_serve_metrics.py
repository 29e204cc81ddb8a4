"""``/metrics`` of a running ``syncd serve``: a Content-Type that a strict media-type parser accepts, the exposition
parsed with prometheus-client's own parsers (text and OpenMetrics), and the families operators look for.

The service is the real command with the test run function (tests/service/runs.py) in place of the pipeline: the
metrics checked here come from the scheduler, the webhook sender, SIGHUP reloads and the store, not from a run.
"""

from __future__ import annotations

import base64
import re
import signal

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from syncd import __version__
from tests.service.conftest import service_config
from tests.webhook_receiver import VerifyingReceiver

SECRET = "whsec_" + base64.b64encode(b"syncd-test-metrics-key-32-bytes!").decode()

# RFC 9110 §8.3.1 / §5.6.6: media-type = type "/" subtype *( OWS ";" OWS parameter ), parameter = token "="
# ( token / quoted-string ). Like Go's mime.ParseMediaType, a parameter named twice is an error.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^({_TOKEN})/({_TOKEN})((?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\]*\"))*)$")
_PARAMETER = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|\"[^\"\\]*\")")


def strict_media_type(value: str) -> tuple[str, dict[str, str]]:
    match = _MEDIA_TYPE.match(value)
    assert match, f"not a media type: {value!r}"
    parameters: dict[str, str] = {}
    for name, raw in _PARAMETER.findall(match.group(3)):
        assert name.lower() not in parameters, f"parameter {name!r} repeated in {value!r}"
        parameters[name.lower()] = raw.strip('"')
    return f"{match.group(1)}/{match.group(2)}".lower(), parameters


def test_strict_media_type_parser_refuses_the_repeated_charset_that_metrics_used_to_send():
    with pytest.raises(AssertionError, match="repeated"):
        strict_media_type("text/plain; version=0.0.4; charset=utf-8; charset=utf-8")


def samples(families, name):
    found = {family.name: family for family in families}
    assert name in found, f"no family {name} among {sorted(found)}"
    return found[name].samples


def test_metrics_are_served_with_the_librarys_content_type_and_the_families_operators_look_for(serve, tmp_path):
    receiver = VerifyingReceiver(SECRET, path="/hooks/metrics")
    receiver.answer = lambda payload, attempt: 500 if payload["org"] == "other" else 204
    (tmp_path / "hook.secret").write_text(SECRET, encoding="utf-8")
    hook = f'[[webhooks]]\nurl = "{receiver.url}?key=in-the-query"\nsecret_file = "hook.secret"\n'
    config = tmp_path / "syncd.toml"
    text = service_config(
        f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, server='webhook_every = "1s"', folder=tmp_path, extra=hook
    )
    config.write_text(text, encoding="utf-8")
    try:
        service = serve(config, SYNCD_TEST_STEPS="1", SYNCD_TEST_DELAY="0")
        service.wait_ready()
        service.signal(signal.SIGHUP)
        service.wait_event("config.reloaded")
        config.write_text(text + "\n[server\n", encoding="utf-8")
        service.signal(signal.SIGHUP)
        service.wait_event("config.reload.refused")
        # The webhook tick (every second here) sends each org's org.create: acme's is accepted, other's answered 500.
        service.wait_event("webhook.delivery.failed", timeout=40)

        answer = service.metrics()
        openmetrics = service.metrics(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    finally:
        receiver.down()

    media, parameters = strict_media_type(answer.headers["Content-Type"])
    assert media == "text/plain" and parameters == {"version": "0.0.4", "charset": "utf-8"}
    families = list(text_string_to_metric_families(answer.text))
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_gc_objects_collected"):
        assert samples(families, name), name
    (python,) = samples(families, "python_info")
    assert python.value == 1 and python.labels["implementation"] == "CPython"
    (build,) = samples(families, "syncd_build_info")
    assert build.labels == {"version": __version__} and build.value == 1
    endpoint = receiver.url  # scheme://host:port/path: the query (which may hold a key) never becomes a label
    delivered = {s.labels["endpoint"]: s.value for s in samples(families, "syncd_webhook_deliveries")}
    failed = {s.labels["endpoint"]: s.value for s in samples(families, "syncd_webhook_failures")}
    assert delivered == {endpoint: 1} and failed == {endpoint: 1}
    given_up = {s.labels["org"]: s.value for s in samples(families, "syncd_webhook_events_given_up")}
    assert given_up == {"acme": 0, "other": 0}
    (oldest,) = samples(families, "syncd_webhook_oldest_undelivered_age_seconds")
    assert oldest.value > 0, "other's org.create waits for its retry"
    reloads = {
        s.labels["result"]: s.value for s in samples(families, "syncd_config_reloads") if s.name.endswith("_total")
    }
    assert reloads == {"ok": 1, "refused": 1}
    assert samples(families, "syncd_scim_writes_held") == [], "defined before the guard holds anything"
    assert "in-the-query" not in answer.text

    media, parameters = strict_media_type(openmetrics.headers["Content-Type"])
    assert media == "application/openmetrics-text" and parameters["version"] == "1.0.0"
    names = {family.name for family in openmetrics_families(openmetrics.text)}
    assert {"syncd_build_info", "syncd_webhook_deliveries", "syncd_config_reloads", "python_info"} <= names


def test_the_scim_listener_never_serves_metrics_so_strangers_cannot_list_tenants(serve, tmp_path):
    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path), encoding="utf-8")
    service = serve(config)
    service.wait_ready()

    public = service.get("/metrics")
    assert public.status_code == 404
    assert "acme" not in public.text and "other" not in public.text and "syncd_" not in public.text
    scraped = service.metrics()
    assert scraped.status_code == 200 and 'org="acme"' in scraped.text


def test_a_metrics_token_file_makes_the_metrics_listener_ask_for_that_bearer_token(serve, tmp_path):
    (tmp_path / "metrics.token").write_text("scrape-secret-123\n", encoding="utf-8")
    config = tmp_path / "syncd.toml"
    server = 'metrics_token_file = "metrics.token"'
    config.write_text(
        service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path, server=server), encoding="utf-8"
    )
    service = serve(config)
    service.wait_ready()
    (listening,) = service.events("metrics.listening")
    assert listening["bearer_required"] is True  # said plainly: a flag about the token is not the token

    refused = service.metrics()
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "syncd_" not in refused.text
    assert service.metrics(headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = service.metrics(headers={"Authorization": "Bearer scrape-secret-123"})
    assert allowed.status_code == 200 and "syncd_build_info" in allowed.text


def test_a_busy_metrics_port_is_one_line_naming_the_flag(cli, tmp_path):
    import socket

    config = tmp_path / "syncd.toml"
    config.write_text(service_config(f"sqlite:///{tmp_path / 's.db'}", {"hr": "1h"}, folder=tmp_path), encoding="utf-8")
    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        taken, spare = busy.getsockname()[1], free.getsockname()[1]
        free.close()
        result = cli(
            "--config", str(config), "serve", "--listen", f"127.0.0.1:{spare}", "--metrics-listen", f"127.0.0.1:{taken}"
        )
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "--metrics-listen" in result.stderr and "Traceback" not in result.stderr
