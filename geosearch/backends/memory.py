"""``MemoryBackend``: the embedded default, over columns held in numpy arrays.

It is put together from the modules beside it: the columns and indexes built from a
snapshot or a frame, and the steps every query shares (:mod:`.memory_index`); the radius,
nearest, polygon and list searches with their keyset paging (:mod:`.memory_search`);
tiles and counts (:mod:`.memory_tiles`). This module loads it and answers the rest of the
protocol: the version, one space by id, the active frame, the nodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from geosearch.backends.base import ACTIVE_FRAME_COLUMNS, NoDataset, NodeStates
from geosearch.backends.memory_search import MemorySearches
from geosearch.backends.memory_tiles import MemoryTiles
from geosearch.features import space_from_head
from geosearch.model import Space
from geosearch.snapshot import serving_table


class MemoryBackend(MemorySearches, MemoryTiles):
    """Answers every query from arrays in memory; built from a snapshot or a frame.

    >>> from geosearch.model import NearestQuery, Point
    >>> backend = MemoryBackend.from_frame(_example_frame(), version="demo")
    >>> [h.space.id for h in backend.nearest(NearestQuery(Point(52.52, 13.40), k=2))]
    ['b', 'a']
    """

    @classmethod
    def from_snapshot(cls, path: str | Path) -> MemoryBackend:
        """Load the snapshot written by ``geosearch ingest --snapshot`` (columnar)."""
        table, meta = serving_table(path)
        return cls(table, str(meta.get("dataset_version", "unknown")))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, version: str = "adhoc") -> MemoryBackend:
        """Build from a frame with the snapshot's columns (tests, synthetic data)."""
        return cls(frame, version)

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version of the snapshot."""
        if self._version is None:
            raise NoDataset("no dataset loaded")
        return self._version

    def data_stamp(self) -> tuple[str, int]:
        """The version of the snapshot, and 0: a snapshot takes no writes."""
        return self.dataset_version(), 0

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        i = int(np.searchsorted(self.ids, space_id))
        if i == self.size or self.ids[i] != space_id:
            return None
        return space_from_head(self._head(i))

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS."""
        frame = self._table.select(list(ACTIVE_FRAME_COLUMNS)).to_pandas()
        frame["amenities"] = [list(a) for a in frame["amenities"]]
        return frame

    def active_table(self) -> pa.Table:
        """Active spaces: id, lat, lon, country, city and amenity_mask, the columns of the
        Arrow table they are held in (no copy, no Python object per space: what the
        coverage reports read)."""
        return self._table.select(["id", "lat", "lon", "country", "city", "amenity_mask"])

    def nodes(self) -> NodeStates:
        """One store: this process' memory, which applies no change (seq 0)."""
        return [{"role": "memory", "healthy": True, "dataset_version": self._version,
                 "applied_seq": 0}]

    def close(self) -> None:
        """Nothing to release."""


def _example_frame() -> pd.DataFrame:
    """Two spaces in Berlin, for the docstring example."""
    return pd.DataFrame({
        "id": ["a", "b"], "name": ["A", "B"], "address": ["", ""], "city": ["Berlin"] * 2,
        "postcode": [None, None], "country": ["DE", "DE"], "lat": [52.53, 52.521],
        "lon": [13.41, 13.401], "amenities": [["wifi"], []], "capacity": [10, None],
        "price_day": [20.0, None], "currency": ["EUR", None], "status": ["active"] * 2,
        "h3_r7": ["", ""], "h3_r8": ["", ""], "h3_r9": ["", ""],
        "geocode_precision": ["input"] * 2,
    })
