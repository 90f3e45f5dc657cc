"""The ``Backend`` protocol: what the HTTP layer, the reports and library users call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

from geosearch.model import (
    Hit,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    TileQuery,
)
from geosearch.tiles import TileFeatures

# What ``nodes`` reports, one dict per store (a name of its own: backends have a method
# called ``list``, which hides the builtin inside their class bodies)
NodeStates = list[dict]
# The columns of ``active_frame``, in order
ACTIVE_FRAME_COLUMNS = ("id", "lat", "lon", "country", "city", "amenities")


class BackendUnavailable(Exception):  # noqa: N818 - reads as a state: "backend unavailable"
    """The store behind a backend cannot be reached now (answer 503, try again later)."""


class NoDataset(Exception):  # noqa: N818
    """The backend has no dataset loaded."""


class StaleVersion(Exception):  # noqa: N818
    """No store of the backend serves the dataset version a query asked for (a cursor
    of a dataset that has been replaced: HTTP 410)."""


@runtime_checkable
class Backend(Protocol):
    """One store of spaces answering every query kind; only active spaces are returned.

    Every implementation gives the same ids in the same order, with ``distance_m`` the
    WGS84 geodesic distance in metres (within 1 m of PostGIS geography).
    """

    def dataset_version(self) -> str:
        """The version of the loaded dataset; raises NoDataset or BackendUnavailable."""
        ...

    def data_stamp(self) -> tuple[str, int]:
        """The dataset version and the seq of the last write the store serves (0 for a
        store that takes no writes), read together: equal stamps, equal active spaces.
        Raises as :meth:`dataset_version` does."""
        ...

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m``, by (distance, id), one page after ``query.after``."""
        ...

    def nearest(self, query: NearestQuery) -> Sequence[Hit]:
        """The k nearest spaces that pass the filters, by (distance, id)."""
        ...

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area, by id or by (distance, id) from the origin."""
        ...

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id."""
        ...

    def get(self, space_id: str) -> Space | None:
        """One active space by id, or None."""
        ...

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """How many spaces the query matches over all its pages."""
        ...

    def tile(self, query: TileQuery) -> TileFeatures:
        """The spaces of a Web Mercator tile that pass the filters: every one once, as a
        point from POINT_ZOOM up, as a point or inside one cluster's count below it."""
        ...

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The same tile as Mapbox Vector Tile bytes, and the dataset version."""
        ...

    def amenity_counts(self) -> dict[str, int]:
        """Number of active spaces with each amenity of the vocabulary."""
        ...

    def active_frame(self) -> pd.DataFrame:
        """All active spaces as the ACTIVE_FRAME_COLUMNS: id, lat, lon, country, city,
        amenities (lists)."""
        ...

    def nodes(self) -> NodeStates:
        """The stores behind the backend, for ``/readyz``: each with its ``role``,
        ``healthy``, ``dataset_version`` (None when it has none) and, for replicas, the
        replication lag (``lag_bytes``, ``lag_seconds``)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
