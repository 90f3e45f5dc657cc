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


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    app = bytes_app(json.loads(Path(args.responses).read_text(encoding="utf-8")))
    from geosearch.serving import serve

    serve(app, "127.0.0.1", args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
