"""The minimal Flask app of `make bench`: the floor an endpoint is measured against.

It runs under the same server as ``geosearch serve`` (gunicorn, the same worker class and
settings) and does the least an app can: look the request's path and query up and return
the bytes geosearch returned for it (``--responses FILE``, JSON: {path: [content type,
body]}), or, with ``--dsn``, run the PostGIS backend's raw SQL for it through psycopg's
prepared statements and return the JSON PostgreSQL built (``--sql FILE``: {path: [sql,
params]}).

    python scripts/floor_app.py --responses R.json --port 8100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def bytes_app(responses: dict[str, tuple[str, str]]):
    """Answers each known path with its recorded bytes."""
    from flask import Flask, Response, request

    app = Flask("floor")
    table = {path: (kind, body.encode()) for path, (kind, body) in responses.items()}

    @app.get("/<path:_path>")
    def answer(_path: str) -> Response:
        kind, body = table[request.full_path]
        return Response(body, mimetype=kind)

    return app


def sql_app(dsn: str, statements: dict[str, tuple[str, dict]]):
    """Runs each known path's SQL (prepared, one pooled psycopg connection per request)
    and returns the stored features of the rows as a JSON array."""
    from flask import Flask, Response, request
    from psycopg.adapt import Loader
    from psycopg_pool import ConnectionPool

    class Raw(Loader):
        def load(self, data):
            return bytes(data)

    def configure(conn):
        conn.adapters.register_loader("json", Raw)

    app = Flask("floor")
    pool: list[ConnectionPool] = []

    @app.get("/<path:_path>")
    def answer(_path: str) -> Response:
        if not pool:  # opened in the worker, after the fork
            pool.append(ConnectionPool(dsn, min_size=1, max_size=5, configure=configure,
                                       kwargs={"autocommit": True}))
        sql, params = statements[request.full_path]
        with pool[0].connection() as conn:
            rows = conn.execute(sql, params, prepare=True).fetchall()
        body = b"[" + b",".join(r[-1] for r in rows if r[-1] is not None) + b"]"
        return Response(body, mimetype="application/json")

    return app


def _params(doc: dict) -> dict:
    """Parameters from JSON (bytes were written as {"hex": ...})."""
    return {k: bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for k, v in doc.items()}


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", help="JSON {path: [content type, body]}")
    parser.add_argument("--sql", help="JSON {path: [sql, params]} (with --dsn)")
    parser.add_argument("--dsn", help="libpq connection string for --sql")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sql:
        table = json.loads(Path(args.sql).read_text(encoding="utf-8"))
        app = sql_app(args.dsn, {p: (sql, _params(params)) for p, (sql, params) in
                                 table.items()})
    else:
        app = bytes_app(json.loads(Path(args.responses).read_text(encoding="utf-8")))
    from geosearch.serving import serve

    serve(app, "127.0.0.1", args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
