"""The ``geosearch`` command line as a newcomer meets it: bad arguments are one line and
status 2, the help states defaults and bounds, ``query`` prints what the API sends and
can POST, ``ingest`` takes a folder holding one feed."""

from __future__ import annotations

import json
import shutil

import pytest

from geosearch.cli import build_parser, main
from geosearch.snapshot import write_snapshot

FEED = "data/feed/spaces.csv"
SQUARE = {"type": "Polygon", "coordinates": [[[13.3, 52.45], [13.5, 52.45], [13.5, 52.55],
                                              [13.3, 52.55], [13.3, 52.45]]]}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, feed_result):
    path = tmp_path_factory.mktemp("cli") / "spaces.parquet"
    write_snapshot(feed_result.frame, path, feed_result.meta())
    return path


def refused(argv: list[str], capsys) -> str:
    """The error line of a command that must stop at status 2 without a traceback."""
    with pytest.raises(SystemExit) as stopped:
        code = main(argv)
        raise SystemExit(code)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(("argv", "says"), [
    (["--amenities", "sauna"], "argument --amenities: unknown amenity 'sauna'; valid: wifi"),
    (["--res", "9"], "argument --res: 9 is out of range: expected an integer from 6 to 8"),
    (["--walk-m", "-5"], "argument --walk-m: -5 is out of range"),
    (["--walk-m", "far"], "argument --walk-m: 'far' is not a number of metres"),
    (["--min-population", "10000"], "argument --min-population: 10000 is out of range"),
    (["--countries", "D1"], "argument --countries: 'D1': expected two-letter country codes"),
])
def test_a_bad_report_argument_is_one_line_and_status_2(argv, says, snapshot, tmp_path,
                                                          capsys):
    line = refused(["report", "--out", str(tmp_path), "--snapshot", str(snapshot), *argv],
                   capsys)
    assert line.startswith("geosearch report: error: ") and says in line


def test_a_report_out_that_is_a_file_and_a_feed_that_is_not_there_are_refused(
        snapshot, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    line = refused(["report", "--out", str(tmp_path / "taken"), "--snapshot", str(snapshot)],
                   capsys)
    assert line.endswith("is a file; give a folder")
    line = refused(["ingest", str(tmp_path / "nowhere.csv"), "--snapshot", str(tmp_path)],
                   capsys)
    assert line.endswith("nowhere.csv: no such file or folder")


def test_a_country_the_report_does_not_know_is_refused(snapshot, tmp_path, capsys):
    line = refused(["report", "--out", str(tmp_path / "r"), "--snapshot", str(snapshot),
                    "--countries", "DE,XX"], capsys)
    assert "no such country in the report: XX" in line and "DE" in line.split("covers")[1]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--port", "70000"], "argument --port: 70000 is out of range"),
    (["serve", "--workers", "0"], "argument --workers: 0 is out of range"),
])
def test_a_bad_serve_argument_is_one_line_and_status_2(argv, says, capsys):
    assert says in refused(argv, capsys)


def test_the_help_states_defaults_bounds_and_the_vocabulary():
    parser = build_parser()
    top = parser.format_help()
    assert ":func:" not in top and "``" not in top  # no reST markup
    commands = {a.dest: a for a in parser._subparsers._group_actions}["command"].choices
    report = commands["report"].format_help()
    for said in ("6..8 (default 8)", "N >= 50,000", "(default 100,000)", "(default 1,000)",
                 "separated by commas", "access_24_7", "relative to the current directory"):
        assert said in " ".join(report.split()), said
    serve = " ".join(commands["serve"].format_help().split())
    for said in ("(default 8000)", "(default 127.0.0.1", "1..64 (default 2)",
                 "within about a second, no restart"):
        assert said in serve, said
    query = " ".join(commands["query"].format_help().split())
    assert "--snapshot PATH" in query and "GEOSEARCH_DATABASE_URL" in query


def test_query_names_the_missing_snapshot_and_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEOSEARCH_SNAPSHOT", raising=False)
    monkeypatch.delenv("GEOSEARCH_DATABASE_URL", raising=False)
    line = refused(["query", "/v1/spaces"], capsys)
    assert f"no snapshot at {tmp_path}/var/snapshot/spaces.parquet" in line
    assert "relative to the current directory" in line and "--snapshot PATH" in line


def test_query_prints_text_and_writes_a_tile_as_bytes(snapshot, tmp_path, capsys):
    assert main(["query", "/", "--snapshot", str(snapshot)]) == 0
    assert capsys.readouterr().out.lstrip().lower().startswith("<!doctype html>")
    tile = tmp_path / "tile.mvt"
    assert main(["query", "/v1/tiles/3/4/2.mvt", "--snapshot", str(snapshot),
                 "--out", str(tile)]) == 0
    assert tile.stat().st_size > 100 and capsys.readouterr().out == ""


def test_query_posts_a_body_given_inline_or_from_a_file(snapshot, tmp_path, capsys):
    path = "/v1/spaces/polygon?lat=52.52&lon=13.405"
    assert main(["query", path, "--snapshot", str(snapshot), "--data", json.dumps(SQUARE)]) == 0
    inline = json.loads(capsys.readouterr().out)
    body = tmp_path / "square.json"
    body.write_text(json.dumps(SQUARE))
    assert main(["query", path, "--snapshot", str(snapshot), "--data", f"@{body}"]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == inline["features"]
    assert inline["type"] == "FeatureCollection" and inline["features"]


def test_ingest_reads_the_one_feed_of_a_folder_and_counts_the_inactive(tmp_path, capsys):
    folder = tmp_path / "feed"
    folder.mkdir()
    shutil.copy(FEED, folder / "spaces.csv")
    (folder / "truth.csv").write_text("row,id,lat,lon\n")  # not a feed: no name column
    assert main(["ingest", str(folder), "--snapshot", str(tmp_path / "snap")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("5050 rows: 4935 loaded (4746 active, served by the API; "
                           "189 inactive, kept but not served;")


def test_ingest_of_a_folder_without_one_feed_says_what_it_expects(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("id,name,lat,lon\n")
    (tmp_path / "b.geojson").write_text("{}")
    line = refused(["ingest", str(tmp_path), "--snapshot", str(tmp_path / "s")], capsys)
    assert "2 files that could be the feed (a.csv, b.geojson)" in line
    (tmp_path / "a.csv").unlink()
    (tmp_path / "b.geojson").unlink()
    line = refused(["ingest", str(tmp_path), "--snapshot", str(tmp_path / "s")], capsys)
    assert "no feed file in it" in line and "id, name, lat, lon" in line


def test_the_map_credits_the_tile_provider_the_settings_name(memory_feed):
    from geosearch.api import create_app
    from geosearch.settings import Settings

    url = "https://tile.example.org/{z}/{x}/{y}.png"
    for attribution, shown in ((None, "© OpenStreetMap contributors"),
                               ("© Example Maps", "© Example Maps")):
        app = create_app(Settings(tile_url=url, tile_attribution=attribution), memory_feed)
        config = app.test_client().get("/map/config.json").get_json()
        assert config == {"tile_url": url, "tile_attribution": shown}


def test_gunicorn_makes_no_control_socket_another_instance_could_share():
    from gunicorn.config import Config

    from geosearch.serving import server_options

    config = Config()
    for key, value in server_options("127.0.0.1", 8000).items():
        config.set(key, value)
    assert config.control_socket_disable is True
