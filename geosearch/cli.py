"""The command line: ``geosearch ingest | serve | report | query | keys``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from geosearch import cliargs
from geosearch.settings import DEFAULT_SNAPSHOT, SERVER_CLIENT_BUDGET, Settings

if TYPE_CHECKING:
    from geosearch.backends.base import Backend
    from geosearch.backends.follower import FollowerBackend


def _geocoder(settings: Settings):
    if settings.geocoder == "gazetteer":
        return None
    from geosearch.ingest.geocode import GeopyGeocoder

    return GeopyGeocoder.from_settings(settings.geocoder, settings.geocoder_domain,
                                       settings.geocoder_scheme, settings.geocode_cache,
                                       settings.geocoder_delay_s,
                                       allow_http=settings.geocoder_allow_http,
                                       miss_ttl_days=settings.geocode_miss_ttl_days)


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run the pipeline and store the result (snapshot or PostGIS)."""
    from geosearch.ingest.decode import FeedError
    from geosearch.ingest.pipeline import run_pipeline

    settings = Settings.from_env(database_url=args.database)
    if args.snapshot is None and not settings.database_url:
        print("geosearch ingest: give --snapshot PATH or --database URL "
              "(or set GEOSEARCH_DATABASE_URL)", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        feed = cliargs.feed_path(args.feed)
    except cliargs.FeedFolderError as exc:
        return _refuse("ingest", str(exc))
    try:
        result = run_pipeline(feed, geocoder=_geocoder(settings))
    except FeedError as exc:
        print(f"geosearch ingest: {exc}; nothing was changed", file=sys.stderr)
        return 1
    report = result.report
    if args.snapshot is not None:
        from geosearch.snapshot import SnapshotError, read_meta, snapshot_file, write_snapshot

        try:
            previous = read_meta(args.snapshot) if snapshot_file(args.snapshot).is_file() else {}
        except SnapshotError:
            previous = {}
        report.unchanged = previous.get("dataset_version") == report.dataset_version
        if not report.unchanged:
            write_snapshot(result.frame, args.snapshot, result.meta())
        where = str(snapshot_file(args.snapshot))
    else:
        from geosearch.store import LoadError, load_into_postgis

        try:
            report.unchanged = not load_into_postgis(result.frame, result.meta(), settings,
                                                     report.to_dict())
        except LoadError as exc:
            print(f"geosearch ingest: the load failed ({exc}); the previous dataset is "
                  "intact", file=sys.stderr)
            return 1
        where = "PostGIS"
    if args.report:
        report.write(args.report)
    if args.metrics_file:
        from geosearch.observe.ingest import write_ingest_metrics

        write_ingest_metrics(args.metrics_file, report, result.frame,
                             time.monotonic() - started)
    state = "unchanged" if report.unchanged else "written"
    print(f"{report.input_rows} rows: {report.loaded} loaded ({report.active} active, served "
          f"by the API; {report.loaded - report.active} inactive, kept but not served; "
          f"{report.repaired} repaired, {report.geocoded} geocoded), {report.rejected} "
          f"rejected -> {where} [{state}, version {report.dataset_version}]")
    return 0


def _refuse(command: str, message: str) -> int:
    """A bad argument found after parsing: one line on stderr, as argparse's own errors
    (status 2)."""
    print(f"geosearch {command}: error: {message}", file=sys.stderr)
    return 2


def _missing_snapshot(settings: Settings) -> str | None:
    """What is missing when ``settings`` name neither a database nor an existing snapshot
    (None when the data is there)."""
    from geosearch.snapshot import snapshot_file

    if settings.database_url or snapshot_file(settings.snapshot).is_file():
        return None
    where = snapshot_file(settings.snapshot).absolute()
    return (f"no snapshot at {where} (the default {DEFAULT_SNAPSHOT} is relative to the "
            f"current directory); give --snapshot PATH or --database URL, or set "
            f"GEOSEARCH_SNAPSHOT (a snapshot is written by geosearch ingest FEED --snapshot "
            f"PATH, or make snapshot in the repository)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API on 127.0.0.1 with gunicorn (or Flask's server with --dev)."""
    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot,
                                 replica_urls=tuple(args.replica) or None)
    if args.index == "memory" and not settings.database_url:
        return _refuse("serve", "--index memory follows a database: give --database URL "
                       "(or set GEOSEARCH_DATABASE_URL)")
    if settings.client_budget is None:
        settings = replace(settings, client_budget=SERVER_CLIENT_BUDGET)
    if args.host not in ("0.0.0.0", "::", *settings.trusted_hosts):
        # the address it listens on is one its clients may name
        settings = replace(settings, trusted_hosts=(*settings.trusted_hosts, args.host))
    from geosearch.settings import worker_class

    if not args.dev and worker_class() == "gevent":
        # gunicorn's gevent workers: patch before anything makes a lock or a socket, so
        # that the app built here (and shared by the forked workers) is gevent's through.
        from gevent import monkey

        monkey.patch_all()
    from geosearch.observe import multiproc, traces

    multiproc.prepare()  # before prometheus_client is imported (with the app)
    from geosearch.api import create_app

    backend: Backend | None = None
    if args.index == "memory":  # built here, before the fork: the workers share it
        backend = _follower(settings)
    elif not settings.database_url:  # a snapshot: served anew when ingest replaces it
        from geosearch.backends.reloading import ReloadingSnapshot

        backend = ReloadingSnapshot(settings.snapshot)
    app = create_app(settings, backend)
    if args.dev:
        from geosearch.serving import configure_logs

        configure_logs(settings.log_format)
        if traces.wanted():  # no fork: tracing starts here
            traces.start(app)
        app.run(host=args.host, port=args.port)
        return 0
    from geosearch.serving import serve

    serve(app, args.host, args.port, args.workers)
    return 0


def _follower(settings: Settings) -> FollowerBackend:
    """The memory index following the database's change feed (built from its dataset
    now)."""
    from geosearch.backends.follower import FollowerBackend
    from geosearch.backends.postgis import PostgisBackend

    return FollowerBackend(PostgisBackend.from_settings(settings))


def cmd_report(args: argparse.Namespace) -> int:
    """Write the coverage report of every country (or of ``--countries``)."""
    from geosearch.backends import open_backend
    from geosearch.reference import markets
    from geosearch.reports.coverage import Coverage, CoverageOptions
    from geosearch.reports.render import write_report

    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot)
    missing = _missing_snapshot(settings)
    if missing:
        return _refuse("report", missing)
    if args.out.exists() and not args.out.is_dir():
        return _refuse("report", f"argument --out: {args.out} is a file; give a folder")
    options = CoverageOptions(min_population=args.min_population, walk_m=args.walk_m,
                              res=args.res, amenities=args.amenities)
    backend = open_backend(settings)
    try:
        coverage = Coverage(backend.active_frame(), options)
    finally:
        backend.close()
    known = set(markets()["iso_a2"]) | set(coverage.spaces["country"])
    unknown = [c for c in args.countries or () if c not in known]
    if unknown:
        return _refuse("report", f"argument --countries: no such country in the report: "
                                 f"{', '.join(unknown)} (it covers {', '.join(sorted(known))})")
    done = write_report(coverage, args.out, args.countries)
    print(f"coverage report of {len(done)} countries -> {args.out / 'index.html'}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Send one request to the app in-process and print its answer: JSON indented, other
    text as it is, anything else (a vector or PNG tile) as bytes; ``--out`` writes the
    body to a file instead. ``--data`` sends it as a POST with that JSON body."""
    from geosearch.api import create_app

    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot)
    missing = _missing_snapshot(settings)
    if missing:
        return _refuse("query", missing)
    client = create_app(settings).test_client()
    if args.data is None:
        response = client.get(args.path)
    else:
        body = args.data
        if body.startswith("@"):
            body = Path(body[1:]).read_text(encoding="utf-8")
        response = client.post(args.path, data=body.encode(), content_type="application/json")
    data = response.get_data()
    response.close()  # a file sent whole (the map page) is closed
    if args.out is not None:
        args.out.write_bytes(data)
    elif response.is_json:
        print(json.dumps(json.loads(data), indent=2, ensure_ascii=False))
    elif (response.mimetype or "").startswith("text/"):
        print(data.decode("utf-8", errors="replace"))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0 if response.status_code < 400 else 1


def cmd_keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys (geosearch.keys) in the PostGIS database."""
    from geosearch.database import make_engine
    from geosearch.keys import KeyCommandError, KeyStore
    from geosearch.store import migrate

    settings = Settings.from_env(database_url=args.database)
    if not settings.database_url:
        print("geosearch keys: give --database URL (or set GEOSEARCH_DATABASE_URL)",
              file=sys.stderr)
        return 2
    engine = make_engine(settings)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    store = KeyStore(settings)
    try:
        if args.action == "create":
            secret = store.create(args.name, args.scopes.split(","))
            print(f"key {args.name!r} created; its secret, shown this once and kept "
                  "nowhere (send it as Authorization: Bearer <secret>):")
            print(secret)
        elif args.action == "list":
            print("\t".join(("name", "scopes", "prefix", "created", "last used", "revoked")))
            for info in store.list_keys():
                print("\t".join(info.row()))
        else:
            store.revoke(args.name)
            print(f"key {args.name!r} revoked")
    except KeyCommandError as exc:
        print(f"geosearch keys {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


DESCRIPTION = """\
Search coworking spaces by place: load a feed (ingest), serve the HTTP API (serve), write
the coverage report (report), ask the API one question without a server (query), manage
API keys (keys). 'geosearch COMMAND --help' describes each command."""

DATA_EPILOG = f"""\
The data: --database URL (or GEOSEARCH_DATABASE_URL) names a PostGIS database; else the
snapshot --snapshot PATH (or GEOSEARCH_SNAPSHOT), default {DEFAULT_SNAPSHOT}, a folder
holding spaces.parquet or the .parquet file itself. The default is relative to the
current directory: run from the repository, or give the path."""


def _sub(sub, name: str, helptext: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose help shows its defaults and the data epilog."""
    return sub.add_parser(name, help=helptext, description=textwrap.fill(description, 88),
                          epilog=DATA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", type=Path, metavar="PATH",
                        help=f"snapshot to read (default: GEOSEARCH_SNAPSHOT, else "
                             f"{DEFAULT_SNAPSHOT} relative to the current directory)")
    parser.add_argument("--database", metavar="URL",
                        help="PostGIS URL to read instead of a snapshot (default: "
                             "GEOSEARCH_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``geosearch`` command."""
    from geosearch.model import Amenity
    from geosearch.reports.coverage import MAX_RES, MAX_WALK_M, MIN_POPULATION, MIN_RES

    parser = argparse.ArgumentParser(prog="geosearch", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = _sub(sub, "ingest", "clean, geocode and load a feed",
                  "Clean, geocode and load a feed into a snapshot or a PostGIS database.")
    ingest.add_argument("feed", type=Path,
                        help="CSV, GeoJSON or GeoParquet feed file, or a folder holding "
                             "exactly one such file")
    ingest.add_argument("--snapshot", type=Path, metavar="PATH",
                        help="snapshot file or folder to write")
    ingest.add_argument("--database", metavar="URL",
                        help="PostGIS URL to load into (default: GEOSEARCH_DATABASE_URL)")
    ingest.add_argument("--report", type=Path, help="write the ingest report (JSON) here")
    ingest.add_argument("--metrics-file", type=Path, metavar="PATH",
                        help="write the run's counts here, in the textfile format of node-exporter")
    ingest.set_defaults(func=cmd_ingest)

    serve = _sub(sub, "serve", "serve the HTTP API on 127.0.0.1",
                 "Serve the HTTP API with gunicorn (or Flask's server with --dev). A snapshot "
                 "is watched: when ingest writes a new one (or the first one, after the "
                 "server started), the workers serve it within about a second, no restart.")
    _data_options(serve)
    serve.add_argument("--replica", action="append", default=[], metavar="URL",
                       help="a hot-standby replica to read from (repeat for more; default "
                            "GEOSEARCH_REPLICA_URLS, comma-separated)")
    serve.add_argument("--index", choices=("postgis", "memory"), default="postgis",
                       help="with --database: answer searches in the database (postgis), or "
                            "from memory, following its change feed (memory); default postgis")
    serve.add_argument("--port", type=cliargs.PORT, default=8000,
                       help="TCP port to listen on (default 8000)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                            "interface)")
    serve.add_argument("--workers", type=cliargs.WORKERS, default=2,
                       help="gunicorn worker processes, 1..64 (default 2)")
    serve.add_argument("--dev", action="store_true", help="Flask's development server")
    serve.set_defaults(func=cmd_serve)

    report = _sub(sub, "report", "write the coverage report (CSV, GeoJSON, HTML)",
                  "Write the coverage report of every country (docs/coverage.md).")
    report.add_argument("--out", type=Path, required=True, help="folder to write")
    _data_options(report)
    report.add_argument("--countries", type=cliargs.countries, metavar="CODES",
                        help="only these countries, ISO codes separated by commas, e.g. DE,FR "
                             "(default: all)")
    report.add_argument("--amenities", type=cliargs.amenities, default=frozenset(),
                        metavar="NAMES",
                        help="count only spaces that have all of these, separated by commas, "
                             "e.g. wifi,parking; one of: "
                             + ", ".join(a.value for a in Amenity) + " (default: any space)")
    report.add_argument("--walk-m", type=cliargs.walk_m, default=1000.0, metavar="METRES",
                        help=f"walking distance that covers a cell, above 0 and at most "
                             f"{MAX_WALK_M:,.0f} (default 1,000)")
    report.add_argument("--min-population", type=cliargs.MIN_POPULATION_ARG, default=100_000,
                        metavar="N",
                        help=f"report cities of at least N inhabitants, N >= {MIN_POPULATION:,} "
                             f"(default 100,000)")
    report.add_argument("--res", type=cliargs.RES, default=8,
                        help=f"H3 resolution of the cells, {MIN_RES}..{MAX_RES} (default 8)")
    report.set_defaults(func=cmd_report)

    query = _sub(sub, "query", "run one API request in-process and print it",
                 "Send one request to the API in this process (no server) and print the "
                 "answer: JSON indented, text as it is, a tile as bytes (or --out FILE). "
                 "Exit status 1 when the answer is an error (4xx, 5xx).")
    query.add_argument("path", help="e.g. '/v1/spaces/nearest?lat=52.52&lon=13.4&k=3'")
    _data_options(query)
    query.add_argument("--data", metavar="JSON",
                       help="POST this JSON body (or @FILE: the file's content) instead of a GET")
    query.add_argument("--out", type=Path, metavar="FILE",
                       help="write the answer's body to FILE instead of printing it")
    query.set_defaults(func=cmd_query)

    keys = sub.add_parser("keys", help="create, list or revoke API keys (PostGIS)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; its secret is the last line")
    create.add_argument("name", help="the key's name, recorded as the actor of its writes")
    create.add_argument("--scopes", required=True, help="write, changes, admin (comma-separated)")
    listing = actions.add_parser("list", help="every key: name, scopes, prefix, times")
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("name")
    for action in (create, listing, revoke):
        action.add_argument("--database", help="PostGIS URL (default: GEOSEARCH_DATABASE_URL)")
    keys.set_defaults(func=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geosearch`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
