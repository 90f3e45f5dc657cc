"""The active spaces as the arrays a coverage report reads, made once per dataset.

A report needs of each space only its position, its country and its amenities:
:class:`SpaceArrays` holds them as numpy arrays (countries as codes, amenities as a bit
mask per space), so that every group-by of a report is a ``bincount`` and every amenity
filter a mask, with no Python object per space. Reports of one dataset that differ in
resolution, amenities, walking distance or smallest city share one (the API keeps it per
data stamp).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geosearch.features import amenity_masks
from geosearch.model import Amenity, amenity_mask


class SpaceArrays:
    """The spaces of an Arrow table with columns lat, lon, country and amenity_mask
    (:func:`~geosearch.model.amenity_mask`), as arrays: :attr:`lat`, :attr:`lon`,
    :attr:`country_code` (an index into :attr:`countries`), :attr:`amenities` (the
    masks). A frame with amenity lists instead is read by :meth:`from_frame`."""

    def __init__(self, table: pa.Table) -> None:
        self.lat = table["lat"].to_numpy().astype(float, copy=False)
        self.lon = table["lon"].to_numpy().astype(float, copy=False)
        country = pc.dictionary_encode(table["country"]).combine_chunks()
        self.country_code = country.indices.fill_null(-1).to_numpy().astype(np.int32)
        self.countries = np.asarray(country.dictionary.to_pylist(), dtype=object)
        self.amenities = table["amenity_mask"].to_numpy()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SpaceArrays:
        """The arrays of a frame with (at least) lat, lon, country and amenities."""
        return cls(pa.table({
            "lat": pa.array(frame["lat"].to_numpy(dtype=float)),
            "lon": pa.array(frame["lon"].to_numpy(dtype=float)),
            "country": pa.array(frame["country"].to_numpy(dtype=object), type=pa.string()),
            "amenity_mask": amenity_masks(frame["amenities"])}))

    @classmethod
    def of_backend(cls, backend: object) -> SpaceArrays:
        """The active spaces of ``backend``: from its Arrow table where it has one
        (``active_table()``: lat, lon, country, amenity_mask, read without a Python
        object per space), else from its ``active_frame()``."""
        table = getattr(backend, "active_table", None)
        if table is not None:
            return cls(table())
        return cls.from_frame(backend.active_frame())  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.lat)

    @property
    def nbytes(self) -> int:
        """The memory of its arrays."""
        return (self.lat.nbytes + self.lon.nbytes + self.country_code.nbytes
                + self.amenities.nbytes)

    def with_all(self, amenities: frozenset[Amenity]) -> np.ndarray:
        """Whether each space has every one of ``amenities``."""
        need = amenity_mask(amenities)
        return (self.amenities & need) == need

    def of_country(self, country: str) -> np.ndarray:
        """Whether each space is in ``country``."""
        at = np.flatnonzero(self.countries == country)
        return self.country_code == (at[0] if len(at) else -1)

    def country_names(self) -> np.ndarray:
        """The country code of each space (strings)."""
        return self.countries[self.country_code] if len(self.countries) else \
            np.empty(0, dtype=object)
