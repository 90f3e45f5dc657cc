"""geosearch: find coworking spaces near a point, in a polygon or in a box.

The public API is what this module exports (``__all__``); everything else is private.

- :class:`Geosearch` answers radius, nearest, polygon and bbox questions in-process,
  over a snapshot or a PostGIS database, with typed :class:`Hit` results.
- :func:`create_app` builds the HTTP service; :func:`search_blueprint` mounts the search
  API in another Flask application.
- :mod:`geosearch.client` asks a running service over HTTP.

>>> from geosearch import Amenity
>>> Amenity.parse("parking").label
'Parking'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Where each public name lives. Importing ``geosearch`` loads none of them: a name is
# imported on first use (PEP 562), so ``geosearch.client`` or the command line do not
# pull in the server stack, and ``geosearch serve`` can set up gevent before it does.
_EXPORTS = {
    "create_app": "geosearch.api", "search_blueprint": "geosearch.api.search",
    "Backend": "geosearch.backends", "BackendUnavailable": "geosearch.backends",
    "NoDataset": "geosearch.backends", "Geosearch": "geosearch.library",
    "make_filters": "geosearch.library", "Settings": "geosearch.settings",
    **dict.fromkeys(("Amenity", "Filters", "Hit", "ListQuery", "NearestQuery", "Page",
                     "Point", "PolygonQuery", "RadiusQuery", "Space"), "geosearch.model"),
}

if TYPE_CHECKING:
    from geosearch.api import create_app
    from geosearch.api.search import search_blueprint
    from geosearch.backends import Backend, BackendUnavailable, NoDataset
    from geosearch.library import Geosearch, make_filters
    from geosearch.model import (
        Amenity,
        Filters,
        Hit,
        ListQuery,
        NearestQuery,
        Page,
        Point,
        PolygonQuery,
        RadiusQuery,
        Space,
    )
    from geosearch.settings import Settings


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geosearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"
__all__ = [
    "Amenity",
    "Backend",
    "BackendUnavailable",
    "Filters",
    "Geosearch",
    "Hit",
    "ListQuery",
    "NearestQuery",
    "NoDataset",
    "Page",
    "Point",
    "PolygonQuery",
    "RadiusQuery",
    "Settings",
    "Space",
    "__version__",
    "create_app",
    "make_filters",
    "search_blueprint",
]
