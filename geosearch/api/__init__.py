"""The HTTP API: ``create_app`` builds the Flask application over one backend.

>>> from geosearch.api import create_app
>>> from geosearch.settings import Settings
>>> app = create_app(Settings(snapshot="does/not/exist"))
>>> app.test_client().get("/readyz").status_code
503
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Flask

from geosearch import observe
from geosearch.api import origin
from geosearch.api.cors import Cors
from geosearch.api.ratelimit import RateLimit, WorkerBudget
from geosearch.backends import Backend, open_backend
from geosearch.clientid import proxy_networks
from geosearch.settings import Settings

if TYPE_CHECKING:
    from geosearch.writes import LiveStore

API_PREFIX = "/v1"


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Flask:
    """Build the application.

    Parameters
    ----------
    settings : defaults to ``Settings.from_env()`` (``GEOSEARCH_*`` variables).
    backend : a ready backend; by default one is opened from the settings, once, and
        kept on the app as ``app.extensions["geosearch"]``.
    """
    # The guard and the blueprints are imported here, not with the package: a module that
    # needs one part of the API (the server, the problem type of geosearch.api.errors)
    # does not load them all.
    from geosearch.api import auth, guard
    from geosearch.api.coverage import coverage_blueprint
    from geosearch.api.health import health_blueprint
    from geosearch.api.mappage import map_blueprint
    from geosearch.api.ogc import ogc_blueprint
    from geosearch.api.openapi import openapi_blueprint
    from geosearch.api.search import search_blueprint
    from geosearch.api.writes import read_only_blueprint, writes_blueprint

    settings = settings or Settings.from_env()
    backend = backend or open_backend(settings)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.extensions["geosearch"] = backend
    app.extensions["geosearch.settings"] = settings
    guard.register(app)
    origin.configure(app, settings)
    cors = Cors(settings.cors_origins) if settings.cors_origins else None
    if cors is not None:
        cors.attach(app)
    live = _live_store(backend)
    app.extensions["geosearch.writes"] = live
    app.register_blueprint(search_blueprint(backend, max_body_bytes=settings.max_body_bytes,
                                            revised=None if live is None else live.get),
                           url_prefix=API_PREFIX)
    app.register_blueprint(read_only_blueprint() if live is None else writes_blueprint(live),
                           url_prefix=API_PREFIX)
    coverage = coverage_blueprint(backend)
    _limit(app, coverage, settings, cors)
    auth.install(app, settings)  # after the limits: a flood is refused before any lookup
    app.register_blueprint(coverage, url_prefix=API_PREFIX)
    app.register_blueprint(ogc_blueprint(backend, live=live), url_prefix="/ogc")
    app.register_blueprint(health_blueprint(backend))
    app.register_blueprint(map_blueprint(settings.tile_url, settings.tile_attribution))
    app.register_blueprint(openapi_blueprint())
    logging.getLogger("geosearch").setLevel(logging.INFO)
    observe.install(app, settings, backend)  # last: around the limits too
    return app


def _live_store(backend: Backend) -> LiveStore | None:
    """The writes of a PostGIS backend's database (on its primary), or of the database a
    memory follower follows; None for a snapshot, which stays read-only."""
    from geosearch.backends.follower import FollowerBackend
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.writes import LiveStore

    if isinstance(backend, FollowerBackend):
        return LiveStore(backend.primary)
    return LiveStore(backend) if isinstance(backend, PostgisBackend) else None


def _limit(app: Flask, heavy: Blueprint, settings: Settings, cors: Cors | None) -> None:
    """The per-client limits the settings ask for (:mod:`geosearch.api.ratelimit`): the
    worker-time budget around the whole app (its 429 marked by ``cors``), the request rate
    on every route, the heavy rate on ``heavy``. Made here, before a server forks its
    workers, so that they share the counts."""
    proxies = proxy_networks(settings.trusted_proxies)
    if settings.client_budget:
        # Flask's way to wrap its WSGI callable in middleware (mypy sees a method)
        app.wsgi_app = WorkerBudget(  # type: ignore[method-assign]
            app.wsgi_app, settings.client_budget, proxies, cors)
    for spec, scope, target in ((settings.rate_limit, "this service", app),
                                (settings.heavy_rate_limit, "this endpoint", heavy)):
        if spec:
            RateLimit(spec, scope, proxies, settings.rate_limit_storage).attach(target)
