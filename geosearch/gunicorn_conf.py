"""gunicorn settings for running the app under a plain ``gunicorn`` command line:

    gunicorn -c python:geosearch.gunicorn_conf 'geosearch.api:create_app()'

The same settings as ``geosearch serve`` (:func:`geosearch.serving.server_options`):
gevent workers that answer their own refusals in problem+json, the request-head timeout,
limits above the app's own, ``X-Forwarded-Proto`` believed only from
``GEOSEARCH_TRUSTED_PROXIES``. ``GEOSEARCH_BIND`` (default 127.0.0.1:8000) and
``GEOSEARCH_WORKERS`` (default 2) set the address and the number of workers.
"""

from __future__ import annotations

import os

from geosearch.observe import multiproc

multiproc.prepare()  # before prometheus_client is imported (with the app)

from geosearch.serving import build_shared, configure_logs, server_options  # noqa: E402
from geosearch.settings import SERVER_CLIENT_BUDGET, Settings  # noqa: E402

_host, _, _port = os.environ.get("GEOSEARCH_BIND", "127.0.0.1:8000").rpartition(":")
# Clients share these workers: the per-client budget is on unless set (geosearch.settings).
os.environ.setdefault("GEOSEARCH_CLIENT_BUDGET", str(SERVER_CLIENT_BUDGET))
_settings = Settings.from_env()
globals().update(server_options(_host or "127.0.0.1", int(_port),
                                int(os.environ.get("GEOSEARCH_WORKERS", "2")),
                                _settings.trusted_proxies))
configure_logs(_settings.log_format)
# The app is built once, before the fork, so that the workers share its dataset and the
# per-client counts (geosearch.api.ratelimit).
preload_app = True
build_shared()
