"""Where this service is, as its clients reach it: the one source of absolute URLs.

A client chooses the ``Host`` header it sends. Links built from it (``self``, ``next``,
the OGC documents' links, the OpenAPI ``servers``) would point wherever a hostile client
said, and clients such as GDAL and QGIS follow ``next`` links. So:

- with ``GEOSEARCH_PUBLIC_URL`` set, every absolute URL starts with it, whatever the
  request said;
- a missing trailing slash is redirected by a path, not an absolute URL;
- else the request's ``Host`` must be one of ``GEOSEARCH_TRUSTED_HOSTS`` (loopback names by
  default); any other is answered 400 before routing (Flask's ``TRUSTED_HOSTS``), and the
  links use the host as checked.

The scheme is the request's own: gunicorn takes ``X-Forwarded-Proto`` only from the
trusted proxies (``forwarded_allow_ips``, :mod:`geosearch.serving`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.routing import RequestRedirect

from geosearch.api.errors import ApiError
from geosearch.settings import Settings

_PUBLIC = "geosearch.public_url"


def configure(app: Flask, settings: Settings) -> None:
    """Check every request's host against the trusted ones (the public URL's included)
    and keep the public URL for :func:`base`."""
    hosts = list(settings.trusted_hosts)
    if settings.public_url:
        hosts.append(urlsplit(settings.public_url).hostname or "")
        app.extensions[_PUBLIC] = settings.public_url.rstrip("/")
    app.config["TRUSTED_HOSTS"] = hosts
    app.before_request(_redirect_by_path)


def _redirect_by_path() -> None:
    """Werkzeug redirects a path without its trailing slash to the path with it, to an
    absolute URL built from the Host header; Flask answers that before any error
    handler. Answer it here instead: problem+json, and a ``Location`` that is a path on
    this same origin."""
    redirect = request.routing_exception
    if isinstance(redirect, RequestRedirect):
        target = urlsplit(redirect.new_url)
        location = target.path + (f"?{target.query}" if target.query else "")
        raise ApiError(redirect.code, "Permanent Redirect", f"this resource is at {location}",
                       headers={"Location": location})


def base() -> str:
    """``scheme://host[:port]`` of the service, for the current request: the public URL
    when configured, else the request's scheme and (checked) host."""
    public = current_app.extensions.get(_PUBLIC)
    if public is not None:
        return public
    return f"{request.scheme}://{request.host}"


def absolute(path: str) -> str:
    """An absolute URL for a path on this service (``path`` as ``url_for`` gives it,
    with any mount prefix)."""
    return base() + path
