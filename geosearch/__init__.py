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
