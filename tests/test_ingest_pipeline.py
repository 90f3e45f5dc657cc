"""The whole feed through the pipeline; the generator; the CLI; the HTTP geocoder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from geosearch.geo import geodesic_m
from geosearch.ingest.geocode import GeopyGeocoder
from geosearch.ingest.pipeline import run_pipeline
from geosearch.reference import REFERENCE_DIR
from geosearch.snapshot import read_snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT / "data" / "feed"
GEOSEARCH = [sys.executable, "-m", "geosearch.cli"]


def _csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_row_is_loaded_or_rejected_with_a_reason(feed_result):
    report = feed_result.report

    assert report.input_rows == len(_csv(FEED / "spaces.csv"))
    assert report.input_rows == report.loaded + report.rejected
    assert report.loaded == len(feed_result.frame)
    assert all(r["reason"] and r["code"] and r["row"] for r in report.rejects)
    rows = sorted([r["row"] for r in report.rejects] + list(feed_result.frame["feed_row"]))
    assert rows == list(range(1, report.input_rows + 1))


def test_every_valid_space_lands_at_its_true_position(feed_result):
    truth = pd.DataFrame(_csv(FEED / "truth.csv")).set_index("id")
    loaded = feed_result.frame.set_index("id")
    valid = truth[truth["valid"] == "true"]

    assert set(valid.index) == set(loaded.index)
    exact = valid[valid["geocoded"] == "false"]
    err = geodesic_m(exact["lat"].astype(float), exact["lon"].astype(float),
                     loaded.loc[exact.index, "lat"], loaded.loc[exact.index, "lon"])
    assert err.max() < 0.01
    geocoded = valid[valid["geocoded"] == "true"]
    assert (loaded.loc[geocoded.index, "geocode_precision"] == "city").all()
    assert (loaded.loc[exact.index, "geocode_precision"] == "input").all()
    assert (loaded["country"] == truth.loc[loaded.index, "country"]).all()


def test_no_planted_defect_comes_through_unhandled(feed_result):
    report = feed_result.report
    rejected = {r["id"]: r["code"] for r in report.rejects}
    repaired = {r["id"]: {x["code"] for x in r["repairs"]} for r in report.repairs}
    for defect in _csv(FEED / "defects.csv"):
        if defect["expected"] == "reject":
            assert rejected.get(defect["id"]) == defect["defect"], defect
        else:
            assert defect["defect"] in repaired.get(defect["id"], set()), defect


def test_loaded_values_are_clean(feed_result):
    frame = feed_result.frame
    vocabulary = {"wifi", "coffee", "meeting_rooms", "printing", "kitchen",
                  "wheelchair_accessible", "reception", "mail_handling", "phone_booths",
                  "lockers", "event_space", "access_24_7", "bike_storage", "parking",
                  "showers", "outdoor_space", "pet_friendly", "childcare"}
    assert all(set(a) <= vocabulary for a in frame["amenities"])
    assert frame["country"].str.fullmatch(r"[A-Z]{2}").all()
    assert (frame["capacity"].dropna() >= 0).all()
    assert not frame["city"].str.contains("Ã|Â|Ä…").any()
    assert frame["h3_r9"].str.len().eq(15).all() and frame["h3_r7"].str.startswith("87").all()


def test_the_generator_is_deterministic(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_feed.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, cwd=ROOT)
    for name in ("spaces.csv", "truth.csv", "defects.csv"):
        assert (tmp_path / name).read_bytes() == (FEED / name).read_bytes(), name


def test_generated_feed_meets_its_specification():
    rows = _csv(FEED / "spaces.csv")
    truth = _csv(FEED / "truth.csv")
    defects = _csv(FEED / "defects.csv")
    markets = pd.read_csv(REFERENCE_DIR / "markets_40.csv")
    assert 4900 <= len(rows) <= 5200
    assert len({r["country"] for r in truth}) == 40
    per_country = pd.Series([t["country"] for t in truth if not t["id"].endswith("-dup")])
    assert per_country.value_counts().to_dict() == dict(zip(markets["iso_a2"],
                                                            markets["quota_of_5000"],
                                                            strict=True))
    no_coords = sum(1 for r in rows if not r["lat"] and not r["lon"]) / len(rows)
    assert 0.04 <= no_coords <= 0.08
    assert 0.06 <= len(defects) / len(rows) <= 0.10
    inactive = sum(1 for r in rows if r["status"] == "inactive") / len(rows)
    assert 0.01 <= inactive <= 0.08


def test_cli_ingest_writes_snapshot_and_report_then_reports_unchanged(tmp_path):
    snap, report = tmp_path / "snap", tmp_path / "report.json"
    args = [*GEOSEARCH, "ingest", str(FEED / "spaces.csv"), "--snapshot", str(snap),
            "--report", str(report)]
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
    first = json.loads(report.read_text())
    stamp = (snap / "spaces.parquet").stat().st_mtime_ns

    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)

    second = json.loads(report.read_text())
    assert first["input_rows"] == first["loaded"] + first["rejected"]
    assert first["unchanged"] is False and second["unchanged"] is True
    assert (snap / "spaces.parquet").stat().st_mtime_ns == stamp
    assert read_snapshot(snap).version == first["dataset_version"]


def test_cli_ingest_of_an_unreadable_feed_changes_nothing(tmp_path, feed_result):
    snap = tmp_path / "snap"
    write_snapshot(feed_result.frame, snap, feed_result.meta())
    bad = tmp_path / "bad.geojson"
    bad.write_text("{broken")

    done = subprocess.run([*GEOSEARCH, "ingest", str(bad), "--snapshot", str(snap)],
                          capture_output=True, text=True, cwd=ROOT)

    assert done.returncode == 1 and "nothing was changed" in done.stderr
    assert read_snapshot(snap).version == feed_result.report.dataset_version


def test_a_crash_while_writing_leaves_the_old_snapshot(tmp_path, feed_result, monkeypatch):
    snap = tmp_path / "snap"
    write_snapshot(feed_result.frame, snap, feed_result.meta())
    import pyarrow.parquet as pq

    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        write_snapshot(feed_result.frame.head(3), snap, {"dataset_version": "new"})

    assert read_snapshot(snap).version == feed_result.report.dataset_version
    assert len(read_snapshot(snap).frame) == len(feed_result.frame)
    assert [p.name for p in snap.iterdir()] == ["spaces.parquet"]


class _Nominatim(BaseHTTPRequestHandler):
    """Answers Nominatim's /search with a fixed street position; counts requests."""

    requests: ClassVar[list[str]] = []

    def do_GET(self):
        url = urlparse(self.path)
        type(self).requests.append(parse_qs(url.query).get("q", [""])[0])
        body = json.dumps([{"place_id": 1, "lat": "52.5301", "lon": "13.4102",
                            "display_name": "Torstraße 1, Berlin", "boundingbox":
                            ["52.53", "52.531", "13.41", "13.411"]}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_geocoder_is_cached_so_reingesting_never_asks_twice(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Nominatim)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    feed = tmp_path / "feed.csv"
    feed.write_text(
        "id,name,address,city,postcode,country,lat,lon,amenities,capacity,price_day,"
        "currency,status\n"
        "a,Alpha,Torstraße 1,Berlin,10119,DE,,,wifi,10,20,EUR,active\n"
        "b,Beta,Torstraße 9,Berlin,10119,DE,,,wifi,10,20,EUR,active\n")
    try:
        geocoder = lambda: GeopyGeocoder.from_settings(  # noqa: E731
            "nominatim", f"127.0.0.1:{server.server_address[1]}", "http",
            tmp_path / "cache.sqlite", min_delay_s=0.0, allow_http=True)
        first = run_pipeline(feed, geocoder=geocoder(), progress=False)
        asked = len(_Nominatim.requests)
        second = run_pipeline(feed, geocoder=geocoder(), progress=False)
    finally:
        server.shutdown()
        server.server_close()

    assert asked == 2 and len(_Nominatim.requests) == 2
    assert "Torstraße 1" in _Nominatim.requests[0]
    for result in (first, second):
        assert list(result.frame["geocode_precision"]) == ["street", "street"]
        assert result.frame["lat"].tolist() == [52.5301, 52.5301]
    # Same address, same place: the two rows are different spaces (different names).
    assert first.report.loaded == 2


def test_geojson_and_geoparquet_feeds_load_like_the_csv(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point

    defective = {d["id"] for d in _csv(FEED / "defects.csv")}
    rows = [r for r in _csv(FEED / "spaces.csv") if r["id"] not in defective][:300]
    header = list(rows[0])
    csv_path = tmp_path / "feed.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)
    props = [{k: v for k, v in r.items() if k not in ("lat", "lon")} for r in rows]
    geoms = [Point(float(r["lon"]), float(r["lat"])) if r["lat"] else None for r in rows]
    frame = gpd.GeoDataFrame(props, geometry=geoms, crs="EPSG:4326")
    frame.to_file(tmp_path / "feed.geojson", driver="GeoJSON")
    frame.to_parquet(tmp_path / "feed.parquet")

    results = [run_pipeline(tmp_path / name, progress=False)
               for name in ("feed.csv", "feed.geojson", "feed.parquet")]

    columns = ["id", "lat", "lon", "country", "city", "amenities", "geocode_precision"]
    base = results[0].frame[columns].to_dict("records")
    assert results[0].report.loaded == 300
    for result in results[1:]:
        assert result.frame[columns].to_dict("records") == base
        assert result.report.dataset_version == results[0].report.dataset_version


NEAR_ZERO = [  # (id, country, lat, lon): valid spaces at lat or lon 0 +- 1e-6
    ("z-greenwich", "GB", 51.4779, -0.00003), ("z-gb-east", "GB", 51.5, 0.000001),
    ("z-gb-west", "GB", 51.5, -0.000001), ("z-fr", "FR", 45.0, -1e-6),
    ("z-ke-north", "KE", 1e-6, 37.5), ("z-ke-south", "KE", -1e-6, 37.5),
    ("z-id", "ID", 1e-6, 109.34), ("z-br", "BR", -1e-6, -51.1),
]


@pytest.mark.parametrize("suffix", ["geojson", "parquet", "csv"])
def test_spaces_at_zero_plus_minus_a_micro_degree_all_load(tmp_path, suffix):
    import geopandas as gpd
    from shapely.geometry import Point

    props = [{"id": i, "name": f"Space {i}", "address": "1 Main Street", "city": "X",
              "country": c, "amenities": "wifi", "capacity": 10, "price_day": 20.5,
              "currency": "EUR", "status": "active"} for i, c, _, _ in NEAR_ZERO]
    path = tmp_path / f"feed.{suffix}"
    if suffix == "csv":  # e-notation, as many writers print values near zero
        rows = [{**p, "lat": f"{lat!r}", "lon": f"{lon:e}"}
                for p, (_, _, lat, lon) in zip(props, NEAR_ZERO, strict=True)]
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        frame = gpd.GeoDataFrame(props, geometry=[Point(lon, lat) for *_, lat, lon in NEAR_ZERO],
                                 crs="EPSG:4326")
        if suffix == "geojson":
            frame.to_file(path, driver="GeoJSON")
        else:
            frame.to_parquet(path)

    result = run_pipeline(path, progress=False)

    assert result.report.rejects == []
    assert result.report.loaded == len(NEAR_ZERO)
    got = {r.id: (r.lat, r.lon) for r in result.frame.itertuples()}
    assert set(got) == {i for i, *_ in NEAR_ZERO}
    for i, _, lat, lon in NEAR_ZERO:
        assert got[i] == pytest.approx((lat, lon), abs=1e-12)


def test_snapshots_are_readable_by_everyone_like_any_data_file(tmp_path, feed_result):
    written = write_snapshot(feed_result.frame, tmp_path / "snap", feed_result.meta())
    assert written.stat().st_mode & 0o777 == 0o644
