"""The answers of one state of a live follower (:class:`StateReads`): the base's answer
and the overlay's, each already in order, made one.

- pages and nearest: merged and cut at the limit; the keyset of a page by distance carries
  the walk's seq, as on PostGIS: its later pages skip the spaces written after it
  (:meth:`~geosearch.backends.follower_state.Layers.walk`);
- counts, amenity counts: the sum of both;
- tiles: the cells of both drawn as one (:func:`~geosearch.backends.memory_tiles.draw`);
- one space by id: the overlay's, else the base's unless hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pandas as pd
import pyarrow as pa

from geosearch.backends.base import ACTIVE_FRAME_COLUMNS
from geosearch.backends.follower_state import Layers
from geosearch.backends.memory import MemoryBackend
from geosearch.backends.memory_tiles import draw
from geosearch.features import Hits
from geosearch.geo import chord_at_most
from geosearch.model import (
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    TileQuery,
)
from geosearch.tiles import TileFeatures


def _parts(shown: MemoryBackend, overlay: MemoryBackend | None) -> list[MemoryBackend]:
    return [shown] if overlay is None else [shown, overlay]


def _first(found: Sequence[Hits], limit: int, by_distance: bool) -> tuple[Hits, bool]:
    """The first ``limit`` of the hits of several indexes (each in order, no space in
    two), by (distance, id) or by id; and whether more were left out."""
    rows = [(d, space_id, head) for hits in found for space_id, head, d in zip(
        hits.ids, hits.heads, hits.distances or [0.0] * len(hits), strict=True)]
    rows.sort(key=(lambda row: (row[0], row[1])) if by_distance else (lambda row: row[1]))
    kept = rows[:limit]
    return Hits([i for _, i, _ in kept], [h for _, _, h in kept],
                [d for d, _, _ in kept] if by_distance else None), len(rows) > limit


def _merged(pages: Sequence[Page], limit: int, walk: int | None, version: str) -> Page:
    """One page of the pages of several indexes (each the first page of its index after
    the query's keyset), by (distance, id) when ``walk`` is the walk's seq, else by id:
    the first ``limit`` hits, and a keyset when there are more."""
    first, *rest = pages
    if all(not p.hits and p.next_after is None for p in rest):  # the base's page alone
        hits, more = cast(Hits, first.hits), first.next_after is not None
    else:
        hits, cut = _first([cast(Hits, p.hits) for p in pages], limit, walk is not None)
        more = cut or any(p.next_after is not None for p in pages)
    if not more:
        return Page(hits, None, version)
    if walk is None:
        return Page(hits, (hits.ids[-1],), version)
    return Page(hits, (float(cast(Sequence[float], hits.distances)[-1]), hits.ids[-1],
                       walk), version)


class StateReads:
    """The Backend protocol's reads, answered from one state of a follower."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers

    def dataset_version(self) -> str:
        """The version of the dataset followed."""
        return self.layers.version

    def data_stamp(self) -> tuple[str, int]:
        """The dataset version and the feed's seq applied, of one state."""
        layers = self.layers
        return layers.version, layers.seq

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m``, by (distance, id): base and overlay merged (the
        overlay skipped when none of its spaces is that near)."""
        layers = self.layers
        walk = layers.seq if query.after is None else int(query.after[-1])
        shown, overlay = layers.walk(None if query.after is None else walk)
        origin = query.origin
        if overlay is not None and overlay.nearest_chord(origin.lat, origin.lon) > (
                chord_at_most(query.radius_m)):
            overlay = None
        return _merged([p.radius(query) for p in _parts(shown, overlay)], query.limit, walk,
                       layers.version)

    def nearest(self, query: NearestQuery) -> Hits:
        """The k nearest of the base's k nearest and the overlay's; the overlay is not
        asked when the base found k and none of its spaces is as near as the k-th."""
        shown, overlay = self.layers.walk(None)
        found = shown.nearest(query)
        if overlay is None:
            return found
        distances = found.distances or []
        if len(found) == query.k and overlay.nearest_chord(
                query.origin.lat, query.origin.lon) > chord_at_most(distances[-1]):
            return found
        return _first([found, overlay.nearest(query)], query.k, by_distance=True)[0]

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area, by id or by (distance, id) from the origin."""
        layers = self.layers
        walk = None
        if query.origin is not None:
            walk = layers.seq if query.after is None else int(query.after[-1])
        parts = _parts(*layers.walk(None if query.after is None else walk))
        return _merged([p.polygon(query) for p in parts], query.limit, walk, layers.version)

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id."""
        layers = self.layers
        parts = _parts(*layers.walk(None))
        return _merged([p.list(query) for p in parts], query.limit, None, layers.version)

    def get(self, space_id: str) -> Space | None:
        """One active space by id, as it now is."""
        return self.layers.get(space_id)

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """Matches over every page: the base's and the overlay's."""
        return sum(p.count(query) for p in _parts(*self.layers.walk(None)))

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's features: the cells of base and overlay drawn as one."""
        parts = _parts(*self.layers.walk(None))
        return draw(query, [(p, p.tile_cells(query)) for p in parts])

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes, and the dataset version."""
        tile = self.tile(query)
        return tile.mvt(), str(tile.version)

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity: the base's and the overlay's."""
        counts = [p.amenity_counts() for p in _parts(*self.layers.walk(None))]
        return {name: sum(c[name] for c in counts) for name in counts[0]}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS, by id."""
        layers = self.layers
        shown = layers.base_rows.filter(pa.array(~layers.hidden))
        columns = list(ACTIVE_FRAME_COLUMNS)
        table = pa.concat_tables([shown.select(columns), layers.overlay_rows.select(columns)])
        frame = table.sort_by("id").to_pandas()
        frame["amenities"] = [list(a) for a in frame["amenities"]]
        return frame
