"""``FollowerBackend``: the memory backend as a live follower of a PostGIS database
(``geosearch serve --database URL --index memory``).

It answers every query from memory, for the database's dataset with every change of its
feed applied up to a seq (:meth:`FollowerBackend.data_stamp`). The state it reads
(:class:`~geosearch.backends.follower_state.Layers`) is a base index with the spaces
written since it was built hidden, and a small overlay index of those spaces as they now
are; a thread in each process keeps it up with the feed
(:class:`~geosearch.backends.follower_feed.Tracker`). Each query reads one state:

- pages and nearest: the base's answer and the overlay's, each already in order, merged
  and cut at the limit (the keyset of a page by distance carries the walk's seq, as on
  PostGIS: its later pages skip the spaces written after it);
- counts, amenity counts: the sum of both;
- tiles: the cells of both drawn as one (:func:`~geosearch.backends.memory_tiles.draw`);
- one space by id: the overlay's, else the base's unless hidden.

Writes go to the database (the primary's :class:`~geosearch.writes.LiveStore`, over
``primary``); the follower never writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import cast

import pandas as pd
import psycopg
import pyarrow as pa

from geosearch.backends.base import ACTIVE_FRAME_COLUMNS, NoDataset, NodeStates
from geosearch.backends.follower_feed import COMPACT_AT, Tracker
from geosearch.backends.follower_state import Layers
from geosearch.backends.memory import MemoryBackend
from geosearch.backends.memory_tiles import draw
from geosearch.backends.postgis import PostgisBackend
from geosearch.features import Hits
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

log = logging.getLogger(__name__)


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


class FollowerBackend:
    """The Backend protocol from memory, following the database of ``primary``: built
    from its dataset here (before a server forks), then kept up with its feed in each
    process; the overlay is folded into the base past ``compact_at`` written spaces."""

    def __init__(self, primary: PostgisBackend, compact_at: int = COMPACT_AT) -> None:
        self.primary = primary
        self.tracker = Tracker(primary.dsn, compact_at)
        try:
            self.tracker.sync()
        except psycopg.Error as exc:  # each process builds its state when it answers
            log.warning("follower: the database did not answer (%s); no dataset yet", exc)

    def _now(self) -> Layers:
        layers = self.tracker.current()
        if layers is None:
            raise NoDataset("the follower has no dataset yet (none loaded, or the database "
                            "has not answered)")
        return layers

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version of the dataset followed."""
        return self._now().version

    def data_stamp(self) -> tuple[str, int]:
        """The dataset version and the feed's seq applied, of one state."""
        layers = self._now()
        return layers.version, layers.seq

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m``, by (distance, id): base and overlay merged."""
        layers = self._now()
        walk = layers.seq if query.after is None else int(query.after[-1])
        parts = _parts(*layers.walk(None if query.after is None else walk))
        return _merged([p.radius(query) for p in parts], query.limit, walk, layers.version)

    def nearest(self, query: NearestQuery) -> Hits:
        """The k nearest of the base's k nearest and the overlay's."""
        parts = _parts(*self._now().walk(None))
        found = [p.nearest(query) for p in parts]
        return found[0] if len(found) == 1 else _first(found, query.k, by_distance=True)[0]

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area, by id or by (distance, id) from the origin."""
        layers = self._now()
        walk = None
        if query.origin is not None:
            walk = layers.seq if query.after is None else int(query.after[-1])
        parts = _parts(*layers.walk(None if query.after is None else walk))
        return _merged([p.polygon(query) for p in parts], query.limit, walk, layers.version)

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id."""
        layers = self._now()
        parts = _parts(*layers.walk(None))
        return _merged([p.list(query) for p in parts], query.limit, None, layers.version)

    def get(self, space_id: str) -> Space | None:
        """One active space by id, as it now is."""
        return self._now().get(space_id)

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """Matches over every page: the base's and the overlay's."""
        return sum(p.count(query) for p in _parts(*self._now().walk(None)))

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's features: the cells of base and overlay drawn as one."""
        parts = _parts(*self._now().walk(None))
        return draw(query, [(p, p.tile_cells(query)) for p in parts])

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes, and the dataset version."""
        tile = self.tile(query)
        return tile.mvt(), str(tile.version)

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity: the base's and the overlay's."""
        counts = [p.amenity_counts() for p in _parts(*self._now().walk(None))]
        return {name: sum(c[name] for c in counts) for name in counts[0]}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS, by id."""
        layers = self._now()
        shown = layers.base_rows.filter(pa.array(~layers.hidden))
        columns = list(ACTIVE_FRAME_COLUMNS)
        table = pa.concat_tables([shown.select(columns), layers.overlay_rows.select(columns)])
        frame = table.sort_by("id").to_pandas()
        frame["amenities"] = [list(a) for a in frame["amenities"]]
        return frame

    def nodes(self) -> NodeStates:
        """This process' memory (its dataset, the seq applied and how long ago it was
        last found current), then the database's nodes."""
        layers = self.tracker.current()
        synced = self.tracker.synced_at
        memory = {"role": "memory", "healthy": layers is not None,
                  "dataset_version": None if layers is None else layers.version,
                  "applied_seq": None if layers is None else layers.seq,
                  "synced_seconds_ago": None if synced is None
                  else round(time.monotonic() - synced, 3)}
        return [memory, *self.primary.nodes()]

    def close(self) -> None:
        """Stop following and close the database's pools."""
        self.tracker.close()
        self.primary.close()
