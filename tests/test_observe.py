"""Request ids, log lines, metrics and traces of the app in-process (geosearch.observe);
the real server under a real Prometheus is tests/test_metrics.py."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from geosearch.api import create_app
from geosearch.backends import prepared
from geosearch.backends.postgis import PostgisBackend
from geosearch.cli import main
from geosearch.database import make_engine
from geosearch.keys import KeyStore
from geosearch.model import ListQuery
from geosearch.observe import logs, traces
from geosearch.observe.ingest import ingest_text
from geosearch.settings import Settings
from geosearch.store import load

RADIUS = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=2000"
GENERATED = re.compile(r"[0-9a-f]{32}")


def value(name: str, **labels: str) -> float:
    """A sample's value in this process's registry (0 before it exists)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_of(route: str, status: str = "200", method: str = "GET") -> float:
    return value("http_server_request_duration_seconds_count", method=method, route=route,
                 status=status)


@pytest.fixture
def log_lines():
    """The JSON lines logged while the test runs (through geosearch.observe.logs)."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.unconfigure()


@pytest.fixture
def client(memory_feed):
    """A client whose responses are read whole (and closed, which records them)."""
    app = create_app(Settings(heavy_rate_limit="2/minute"), backend=memory_feed)
    return app.test_client()


def get(client, path: str, **kwargs):
    return client.get(path, buffered=True, **kwargs)


def access(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "geosearch.access"]


# -- request ids ---------------------------------------------------------------------------

def test_a_good_request_id_is_echoed_and_in_its_log_line(client, log_lines):
    response = get(client, RADIUS, headers={"X-Request-ID": "abc"})

    assert response.status_code == 200 and response.headers["X-Request-ID"] == "abc"
    [line] = access(log_lines())
    assert line["request_id"] == "abc"


@pytest.mark.parametrize("sent", ["x" * 300, "café", "a b", "", "ab/cd", "x" * 129])
def test_a_bad_or_missing_request_id_is_replaced(client, log_lines, sent):
    response = get(client, RADIUS, headers={"X-Request-ID": sent})

    made = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(made) and made != sent
    assert access(log_lines())[0]["request_id"] == made


def test_the_longest_acceptable_id_is_kept(client):
    sent = "A-z_0.9" * 18 + "xx"  # 128 characters of the allowed ones
    assert get(client, RADIUS, headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


def test_every_answer_has_an_id_and_problems_carry_it(client):
    for path in ("/v1/spaces/radius?lat=99", "/nope", "/healthz", "/v1/spaces/x%00y"):
        response = get(client, path)
        made = response.headers["X-Request-ID"]
        if response.status_code >= 400:
            assert response.get_json()["request_id"] == made


def test_a_500_logs_its_trace_with_the_id_and_answers_without_it(memory_feed, log_lines):
    app = create_app(Settings(), backend=memory_feed)

    def boom():
        raise ZeroDivisionError("the secret inner state")

    app.add_url_rule("/boom", "boom", boom)
    response = get(app.test_client(), "/boom", headers={"X-Request-ID": "bug-42"})

    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert json.loads(body)["request_id"] == "bug-42"
    assert "Traceback" not in body and "ZeroDivision" not in body and "secret" not in body
    [error] = [line for line in log_lines() if line["level"] == "ERROR"]
    assert error["request_id"] == "bug-42"
    assert "Traceback" in error["exc_info"] and "ZeroDivisionError" in error["exc_info"]
    assert access(log_lines())[0]["status"] == 500


# -- log lines ------------------------------------------------------------------------------

def test_a_path_is_logged_as_the_client_wrote_it(client, log_lines):
    get(client, "/v1/spaces/caf%C3%A9")
    assert access(log_lines())[0]["path"] == "/v1/spaces/café"


def test_a_request_line_has_its_fields_and_no_secret_query_or_body(client, log_lines):
    response = client.post("/v1/spaces/polygon?limit=3", buffered=True,
                           json={"type": "Polygon", "coordinates": [[[13.3, 52.4], [13.5, 52.4],
                                                                     [13.5, 52.6], [13.3, 52.4]]]},
                           headers={"Authorization": "Bearer gs_live_topsecret",
                                    "User-Agent": "probe/1.0"},
                           environ_base={"REMOTE_ADDR": "198.51.100.7"})

    assert response.status_code == 200
    [line] = access(log_lines())
    assert {k: line[k] for k in ("method", "route", "path", "status", "client", "user_agent")} \
        == {"method": "POST", "route": "/v1/spaces/polygon", "path": "/v1/spaces/polygon",
            "status": 200, "client": "198.51.100.7", "user_agent": "probe/1.0"}
    assert line["bytes"] == len(response.data) and line["duration_ms"] > 0
    assert "time" in line and line["level"] == "INFO"
    text = json.dumps(log_lines())
    assert "topsecret" not in text and "limit=3" not in text and "13.3" not in text


def test_text_lines_carry_the_request_id(client):
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    try:
        get(client, "/nope", headers={"X-Request-ID": "txt-1"})
        get(client, "/x%0A2026-01-01 INFO forged%C3%A9", headers={"X-Request-ID": "txt-2"})
    finally:
        logs.unconfigure()
    first, second = stream.getvalue().splitlines()
    assert re.search(r" INFO geosearch.access \[txt-1\] GET /nope 404 ", first)
    assert "[txt-2] GET /x\\n2026-01-01 INFO forged\\xe9 400 " in second


def test_request_lines_go_to_a_file_or_nowhere(client, tmp_path):
    stream, path = io.StringIO(), tmp_path / "requests.log"
    logs.configure("json", str(path), stream)
    try:
        get(client, RADIUS, headers={"X-Request-ID": "to-file"})
        logs.configure("json", "", stream)
        get(client, RADIUS, headers={"X-Request-ID": "nowhere"})
    finally:
        logs.unconfigure()
    [line] = [json.loads(line) for line in path.read_text().splitlines()]
    assert (line["request_id"], line["logger"]) == ("to-file", "geosearch.access")
    assert "to-file" not in stream.getvalue() and "nowhere" not in stream.getvalue()


def test_in_process_the_request_lines_are_the_host_logger_records(client, caplog):
    with caplog.at_level(logging.INFO, logger="geosearch.access"):
        get(client, RADIUS, headers={"X-Request-ID": "hosted"})
    [record] = [r for r in caplog.records if r.name == "geosearch.access"]
    assert record.msg["request_id"] == "hosted" and record.msg["status"] == 200


def test_gunicorn_error_lines_go_through_the_service_handlers():
    from gunicorn.config import Config

    logger = logs.GunicornLogger(Config())
    assert logger.error_log.handlers == [] and logger.error_log.propagate


# -- metrics --------------------------------------------------------------------------------

def test_requests_are_counted_per_route_template(client):
    before = requests_of("/v1/spaces/{id}", "404")
    for space_id in ("missing-1", "missing-2", "missing-3"):
        assert get(client, f"/v1/spaces/{space_id}").status_code == 404
    assert requests_of("/v1/spaces/{id}", "404") == before + 3
    assert value("http_server_request_duration_seconds_count", method="GET",
                 route="/v1/spaces/missing-1", status="404") == 0


def test_domain_metrics_follow_the_answers(client):
    before = {"results": value("geosearch_search_results_count", kind="nearest"),
              "bad": value("geosearch_http_client_errors_total", reason="bad_parameter"),
              "unmatched": requests_of("unmatched", "404", "OTHER"),
              "tile_hit": value("geosearch_cache_lookups_total", cache="tile", outcome="hit"),
              "tile_miss": value("geosearch_cache_lookups_total", cache="tile",
                                 outcome="miss"),
              "cov_hit": value("geosearch_cache_lookups_total", cache="coverage",
                               outcome="hit"),
              "limited": value("geosearch_rate_limited_total", scope="endpoint"),
              "write": value("geosearch_writes_total", op="create", outcome="method")}
    nearest = get(client, "/v1/spaces/nearest?lat=52.52&lon=13.405&k=7")
    get(client, "/v1/spaces/radius?lat=999&lon=0&radius_m=1")
    client.open("/nothing", method="BREW", buffered=True)
    tile = get(client, "/v1/tiles/10/550/335.mvt")
    get(client, "/v1/tiles/10/550/335.mvt", headers={"If-None-Match": tile.headers["ETag"]})
    for _ in range(3):  # the heavy limit is 2 a minute: the third is refused
        get(client, "/v1/coverage/countries")
    client.post("/v1/spaces", json={}, buffered=True)  # a snapshot: 405

    assert nearest.get_json()["numberReturned"] == 7
    assert value("geosearch_search_results_count", kind="nearest") == before["results"] + 1
    assert value("geosearch_search_results_sum", kind="nearest") >= 7
    assert value("geosearch_http_client_errors_total", reason="bad_parameter") \
        == before["bad"] + 1
    assert requests_of("unmatched", "404", "OTHER") == before["unmatched"] + 1
    assert value("geosearch_cache_lookups_total", cache="tile", outcome="miss") \
        == before["tile_miss"] + 1
    assert value("geosearch_cache_lookups_total", cache="tile", outcome="hit") \
        == before["tile_hit"] + 1
    assert value("geosearch_cache_lookups_total", cache="coverage", outcome="hit") \
        == before["cov_hit"] + 1
    assert value("geosearch_rate_limited_total", scope="endpoint") == before["limited"] + 1
    assert value("geosearch_writes_total", op="create", outcome="method") == before["write"] + 1


def test_metrics_show_the_store_state_to_allowed_addresses_only(client, memory_feed):
    response = get(client, "/metrics")

    assert response.status_code == 200 and response.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(True))}
    [up] = families["geosearch_node_up"].samples
    assert (up.labels, up.value) == ({"node": "memory", "role": "memory"}, 1.0)
    [active] = families["geosearch_dataset_active_spaces"].samples
    assert active.value == memory_feed.count(ListQuery())
    assert "http_server_request_duration_seconds" in families
    for address in ("10.1.2.3", "2001:db8::1", "192.168.0.1"):
        refused = get(client, "/metrics", environ_base={"REMOTE_ADDR": address})
        assert refused.status_code == 403, address
        assert refused.mimetype == "application/problem+json"
    assert get(client, "/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_the_allowed_addresses_are_read_through_trusted_proxies(memory_feed):
    settings = Settings(metrics_allow=("192.0.2.0/24",), trusted_proxies=("10.0.0.1",))
    client = create_app(settings, backend=memory_feed).test_client()

    def status(peer: str, forwarded: str | None = None) -> int:
        headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
        return get(client, "/metrics", headers=headers,
                   environ_base={"REMOTE_ADDR": peer}).status_code

    assert status("192.0.2.9") == 200
    assert status("127.0.0.1") == 403  # loopback is not in this list
    assert status("10.0.0.1", "192.0.2.7") == 200
    assert status("10.0.0.1", "198.51.100.1") == 403
    assert status("198.51.100.1", "192.0.2.7") == 403  # an untrusted peer's header


def test_metrics_can_be_turned_off(memory_feed):
    client = create_app(Settings(metrics=False), backend=memory_feed).test_client()
    assert get(client, "/metrics").status_code == 404
    assert get(client, RADIUS).headers["X-Request-ID"]


@pytest.mark.parametrize("allow", [("localhost",), ("10.0.0.0/33",)])
def test_a_bad_allow_list_is_refused_naming_the_setting(allow):
    with pytest.raises(ValueError, match="GEOSEARCH_METRICS_ALLOW"):
        Settings(metrics_allow=allow)


# -- ingest -------------------------------------------------------------------------------

def test_ingest_writes_its_counts_as_a_textfile(tmp_path, capsys):
    rows = tmp_path / "feed.csv"
    with Path("data/feed/spaces.csv").open(encoding="utf-8") as feed:
        rows.write_text("".join(line for _, line in zip(range(301), feed, strict=False)))
    metrics = tmp_path / "ingest.prom"

    assert main(["ingest", str(rows), "--snapshot", str(tmp_path / "snap"),
                 "--report", str(tmp_path / "report.json"), "--metrics-file", str(metrics)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert capsys.readouterr().out.splitlines()[-1].startswith("300 rows: ")
    samples = {(s.name, tuple(s.labels.values())): s.value
               for f in text_string_to_metric_families(metrics.read_text()) for s in f.samples}
    assert samples[("geosearch_ingest_rows_read", ())] == report["input_rows"] == 300
    assert samples[("geosearch_ingest_rows_loaded", ())] == report["loaded"]
    rejected = {k[1][0]: v for k, v in samples.items() if k[0] == "geosearch_ingest_rows_rejected"}
    assert rejected == report["rejects_by_code"] and sum(rejected.values()) == report["rejected"]
    repairs = {k[1][0]: v for k, v in samples.items() if k[0] == "geosearch_ingest_repairs"}
    assert repairs == report["repairs_by_code"]
    geocoded = sum(v for k, v in samples.items() if k[0] == "geosearch_ingest_rows_geocoded")
    assert geocoded == report["geocoded"]
    assert samples[("geosearch_ingest_duration_seconds", ())] > 0


def test_ingest_counts_of_the_whole_feed(feed_result):
    text = ingest_text(feed_result.report, feed_result.frame, 2.0, now=100.0)
    samples = {(s.name, tuple(s.labels.values())): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("geosearch_ingest_rows_read", ())] == feed_result.report.input_rows
    assert samples[("geosearch_ingest_last_success_timestamp_seconds", ())] == 100.0


# -- PostGIS: traces, keys, writes and the pools --------------------------------------------

@pytest.fixture(scope="module")
def live(pg_database, feed_result):
    """The app over the feed in a database of its own, and a key that writes."""
    url = pg_database("observe")
    engine = make_engine(Settings(database_url=url))
    load(feed_result.frame, feed_result.meta(), engine)
    engine.dispose()
    settings = Settings(database_url=url, write_rate_limit="")
    backend = PostgisBackend(settings)
    app = create_app(settings, backend=backend)
    keys = KeyStore(settings)
    secret = keys.create("writer", ["write"])
    yield SimpleNamespace(url=url, app=app, backend=backend, client=app.test_client(),
                          secret=secret, auth={"Authorization": f"Bearer {secret}"})
    app.extensions["geosearch.writes"].close()
    keys.close()
    backend.close()


def feature(name: str) -> dict:
    """A space to create in Berlin."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.3777, 52.5163]},
            "properties": {"name": name, "address": "Unter den Linden 1", "city": "Berlin",
                           "country": "DE", "amenities": ["wifi"]}}


def test_a_request_span_has_a_child_span_per_statement_on_postgis(live, log_lines):
    # a new app: Flask takes no new hooks on an app that has served (gunicorn's workers
    # start tracing before their first request)
    app = create_app(Settings(database_url=live.url), backend=live.backend)
    exporter = InMemorySpanExporter()
    tracing = traces.start(app, exporter)
    try:
        response = get(app.test_client(), RADIUS, headers={"X-Request-ID": "traced"})
    finally:
        tracing.stop()
        app.extensions["geosearch.writes"].close()
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    statements = [s for s in spans if s.attributes.get("db.system") == "postgresql"]
    assert server.attributes["http.route"] == "/v1/spaces/radius"
    assert statements and all(s.parent.span_id == server.context.span_id for s in statements)
    assert any("ST_DWithin" in s.attributes["db.statement"] for s in statements)
    [line] = access(log_lines())
    assert line["request_id"] == "traced"
    assert line["trace_id"] == format(server.context.trace_id, "032x")
    assert prepared.run.__name__ == "run"  # stopped: the serving path as it was


def test_a_write_is_counted_and_logged_with_its_key_name_never_its_secret(live, log_lines):
    before = {outcome: value("geosearch_writes_total", op="create", outcome=outcome)
              for outcome in ("ok", "auth", "bad_parameter")}
    waits = value("geosearch_db_pool_wait_seconds_count", node="primary")

    assert get(live.client, RADIUS).status_code == 200
    created = live.client.post("/v1/spaces", json=feature("Observed Loft"),
                               headers=live.auth, buffered=True)
    live.client.post("/v1/spaces", json=feature("Nobody's"), buffered=True)
    live.client.post("/v1/spaces", data="{", content_type="application/json",
                     headers=live.auth, buffered=True)

    assert created.status_code == 201
    assert value("geosearch_writes_total", op="create", outcome="ok") == before["ok"] + 1
    assert value("geosearch_writes_total", op="create", outcome="auth") == before["auth"] + 1
    assert value("geosearch_writes_total", op="create", outcome="bad_parameter") \
        == before["bad_parameter"] + 1
    assert value("geosearch_db_pool_wait_seconds_count", node="primary") > waits
    assert value("geosearch_db_pool_connections_in_use", node="primary") == 0
    lines = access(log_lines())
    assert [line.get("key_name") for line in lines] == [None, "writer", None, "writer"]
    assert live.secret not in json.dumps(log_lines())
