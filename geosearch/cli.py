"""The command line: ``geosearch ingest | serve | report | query | keys``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from geosearch.settings import SERVER_CLIENT_BUDGET, Settings

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
        result = run_pipeline(args.feed, geocoder=_geocoder(settings))
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
    print(f"{report.input_rows} rows: {report.loaded} loaded ({report.repaired} repaired, "
          f"{report.geocoded} geocoded), {report.rejected} rejected -> {where} "
          f"[{state}, version {report.dataset_version}]")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API on 127.0.0.1 with gunicorn (or Flask's server with --dev)."""
    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot,
                                 replica_urls=tuple(args.replica) or None)
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
        if not settings.database_url:
            print("geosearch serve: --index memory follows a database: give --database URL "
                  "(or set GEOSEARCH_DATABASE_URL)", file=sys.stderr)
            return 2
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
    from geosearch.model import Amenity
    from geosearch.reports.coverage import Coverage, CoverageOptions
    from geosearch.reports.render import write_report

    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot)
    options = CoverageOptions(min_population=args.min_population, walk_m=args.walk_m,
                              res=args.res, amenities=Amenity.parse_set(args.amenities or ""))
    backend = open_backend(settings)
    try:
        coverage = Coverage(backend.active_frame(), options)
    finally:
        backend.close()
    only = [c.strip().upper() for c in args.countries.split(",")] if args.countries else None
    done = write_report(coverage, args.out, only)
    print(f"coverage report of {len(done)} countries -> {args.out / 'index.html'}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Ask one question of a backend and print GeoJSON (for scripts and debugging)."""
    from geosearch.api import create_app

    settings = Settings.from_env(database_url=args.database, snapshot=args.snapshot)
    client = create_app(settings).test_client()
    response = client.get(args.path)
    print(json.dumps(response.get_json(), indent=2, ensure_ascii=False))
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``geosearch`` command."""
    parser = argparse.ArgumentParser(prog="geosearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="clean, geocode and load a feed")
    ingest.add_argument("feed", type=Path, help="CSV, GeoJSON or GeoParquet feed")
    ingest.add_argument("--snapshot", type=Path, help="snapshot file or folder to write")
    ingest.add_argument("--database", help="PostGIS URL (default: GEOSEARCH_DATABASE_URL)")
    ingest.add_argument("--report", type=Path, help="write the ingest report (JSON) here")
    ingest.add_argument("--metrics-file", type=Path, metavar="PATH",
                        help="write the run's counts here, in the textfile format of node-exporter")
    ingest.set_defaults(func=cmd_ingest)

    serve = sub.add_parser("serve", help="serve the HTTP API on 127.0.0.1")
    serve.add_argument("--snapshot", type=Path, help="snapshot to serve")
    serve.add_argument("--database", help="PostGIS URL to serve from (the primary)")
    serve.add_argument("--replica", action="append", default=[], metavar="URL",
                       help="a hot-standby replica to read from (repeat for more; default "
                            "GEOSEARCH_REPLICA_URLS, comma-separated)")
    serve.add_argument("--index", choices=("postgis", "memory"), default="postgis",
                       help="with --database: answer searches in the database (postgis), or "
                            "from memory, following its change feed (memory)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--dev", action="store_true", help="Flask's development server")
    serve.set_defaults(func=cmd_serve)

    report = sub.add_parser("report", help="write the coverage report (CSV, GeoJSON, HTML)")
    report.add_argument("--out", type=Path, required=True, help="folder to write")
    report.add_argument("--snapshot", type=Path, help="snapshot (default GEOSEARCH_SNAPSHOT)")
    report.add_argument("--database", help="PostGIS URL instead of a snapshot")
    report.add_argument("--countries", help="only these, e.g. DE,FR (default: all)")
    report.add_argument("--amenities", help="count only spaces with all of these")
    report.add_argument("--walk-m", type=float, default=1000.0, help="walking distance")
    report.add_argument("--min-population", type=int, default=100_000)
    report.add_argument("--res", type=int, default=8, help="H3 resolution of the cells")
    report.set_defaults(func=cmd_report)

    query = sub.add_parser("query", help="run one API request in-process and print it")
    query.add_argument("path", help="e.g. '/v1/spaces/nearest?lat=52.52&lon=13.4&k=3'")
    query.add_argument("--snapshot", type=Path)
    query.add_argument("--database")
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
