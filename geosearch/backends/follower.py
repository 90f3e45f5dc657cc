"""``FollowerBackend``: the memory backend as a live follower of a PostGIS database
(``geosearch serve --database URL --index memory``).

It answers every query from memory, for the database's dataset with every change of its
feed applied up to a seq (:meth:`FollowerBackend.data_stamp`). The state it reads
(:class:`~geosearch.backends.follower_state.Layers`) is a base index with the spaces
written since it was built hidden, and a small overlay index of those spaces as they now
are; a thread in each process keeps it up with the feed
(:class:`~geosearch.backends.follower_feed.Tracker`), and a request's answers come from
one state (:class:`~geosearch.backends.follower_reads.StateReads`).

A request that names a seq (a consistency token: :mod:`geosearch.backends.readscope`)
is answered from a state that has applied it: the follower waits for one up to
``consistency_wait_ms`` from the request's start, then the primary answers. Writes go to
the database (the primary's :class:`~geosearch.writes.LiveStore`, over ``primary``); the
follower never writes.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import psycopg

from geosearch.backends import readscope
from geosearch.backends.base import NoDataset, NodeStates
from geosearch.backends.follower_feed import COMPACT_AT, Tracker
from geosearch.backends.follower_reads import StateReads
from geosearch.backends.follower_state import Layers
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


class FollowerBackend:
    """The Backend protocol from memory, following the database of ``primary``: built
    from its dataset here (before a server forks), then kept up with its feed in each
    process; the overlay is folded into the base past ``compact_at`` written spaces."""

    def __init__(self, primary: PostgisBackend, compact_at: int = COMPACT_AT) -> None:
        self.primary = primary
        self.tracker = Tracker(primary.dsn, compact_at)
        self._wait_s = primary.settings.consistency_wait_ms / 1000
        try:
            self.tracker.sync()
        except psycopg.Error as exc:  # each process builds its state when it answers
            log.warning("follower: the database did not answer (%s); no dataset yet", exc)

    def _serving(self) -> StateReads | PostgisBackend:
        """What answers this request: the state it began with (the current one outside a
        request); for a request that names a seq, a state that has applied it, else the
        primary once the wait is over."""
        scope = readscope.current()
        if scope is None:
            return self._reads(self.tracker.current())
        return scope.pin(self, lambda: self._chosen(scope))

    def _chosen(self, scope: readscope.ReadScope) -> StateReads | PostgisBackend:
        layers = self.tracker.current()
        if scope.min_seq and (layers is None or layers.seq < scope.min_seq):
            layers = self.tracker.wait_for(scope.min_seq, scope.started + self._wait_s)
            if layers is None or layers.seq < scope.min_seq:
                return self.primary  # notes its own stamp
        reads = self._reads(layers)
        scope.note(reads.layers.version, reads.layers.seq)
        return reads

    @staticmethod
    def _reads(layers: Layers | None) -> StateReads:
        if layers is None:
            raise NoDataset("the follower has no dataset yet (none loaded, or the database "
                            "has not answered)")
        return StateReads(layers)

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version of the dataset followed."""
        return self._serving().dataset_version()

    def data_stamp(self) -> tuple[str, int]:
        """The dataset version and the feed's seq applied, of one state."""
        return self._serving().data_stamp()

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m``, by (distance, id)."""
        return self._serving().radius(query)

    def nearest(self, query: NearestQuery) -> Hits:
        """The k nearest spaces that pass the filters."""
        return self._serving().nearest(query)

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area, by id or by (distance, id) from the origin."""
        return self._serving().polygon(query)

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id."""
        return self._serving().list(query)

    def get(self, space_id: str) -> Space | None:
        """One active space by id, as it now is."""
        return self._serving().get(space_id)

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """Matches over every page."""
        return self._serving().count(query)

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's features."""
        return self._serving().tile(query)

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes, and the dataset version."""
        return self._serving().tile_mvt(query)

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        return self._serving().amenity_counts()

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS, by id."""
        return self._serving().active_frame()

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
