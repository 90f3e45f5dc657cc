"""A WSGI app served on loopback for the length of a test or a module."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from werkzeug.serving import make_server


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by Werkzeug's threaded server on a free 127.0.0.1 port, in a thread
    of its own; yields its base URL, then stops the server and closes its socket."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
