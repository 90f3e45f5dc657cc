"""``PostgisBackend``: the same questions answered by PostGIS, on psycopg 3 directly.

The backend is in three rooms: the statements, SQL text and the parameters it binds
(:mod:`.statements`, :mod:`.tile_statements`); the nodes, which node runs a statement
and what happens when it fails (:mod:`.nodes`, their sessions: :mod:`.sessions`); and
here, the protocol's methods, each a statement or two whose rows are read by name.

The hot path: a ``psycopg_pool`` pool per process (opened after gunicorn forks), the SQL
text built once per query shape and prepared on the server, the dataset version and the
change feed's seq read in the same statement as the page (what answered, exactly: a
consistency token is checked against it, :mod:`.nodes`), and each result read as the
feature bytes stored at load (:mod:`geosearch.features`), not as a row turned into
objects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from geosearch.backends.base import (
    ACTIVE_FRAME_COLUMNS,
    BackendUnavailable,
    NoDataset,
    NodeStates,
)
from geosearch.backends.nodes import Node, Nodes
from geosearch.backends.statements import (
    ACTIVE_FRAME_SQL,
    AMENITY_COUNTS_SQL,
    DATA_STAMP_SQL,
    NODE_STATE_SQL,
    SPACE_SQL,
    Query,
    count_statement,
    plane_far_statement,
    plane_statement,
    statement,
    versioned_page,
)
from geosearch.backends.termcounts import Lookup, Plane, TermCounts
from geosearch.backends.tile_statements import tile_statement
from geosearch.database import libpq_url
from geosearch.features import Hits, space_from_head
from geosearch.model import (
    Amenity,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    TileQuery,
)
from geosearch.settings import Settings
from geosearch.tiles import TileFeatures

PagedQuery = RadiusQuery | PolygonQuery | ListQuery
Rows = list  # rows of a statement (the methods named ``list`` shadow the builtin)


def _lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a byte offset."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _distance_hits(page: Rows) -> Hits:
    """Hits of a page by distance: rows of the version, id, distance, feature (and
    more)."""
    return Hits([space_id for _, space_id, *_ in page],
                [feature for _, _, _, feature, *_ in page], [d for _, _, d, *_ in page])


def _id_hits(page: Rows) -> Hits:
    """Hits of a page by id: rows of the version, id, feature."""
    return Hits([space_id for _, space_id, _ in page], [feature for _, _, feature in page])


def _columns(rows: Rows, width: int) -> list[tuple]:
    """The columns of rows ``width`` wide (as many empty ones when there is no row)."""
    return list(zip(*rows, strict=True)) if rows else [()] * width


def _node_state(cluster: Nodes, node: Node) -> dict:
    """A node's role and health and, when it answers, its dataset version, applied seq and
    WAL position (``lsn``)."""
    state: dict = {"role": node.role, "healthy": False, "dataset_version": None}
    if node.healthy:  # else out of rotation until the watcher finds it answering
        try:
            [(version, seq, lsn)] = cluster.run_on_node(node, NODE_STATE_SQL, {})
        except (BackendUnavailable, NoDataset):
            return state
        state.update(healthy=True, dataset_version=version, applied_seq=int(seq), lsn=lsn)
    return state


def _seconds_behind(cluster: Nodes, seqs: list[int], latest: int | None
                    ) -> list[float | None]:
    """:meth:`.nodes.Nodes.seconds_behind`; all None when the primary cannot tell."""
    if latest is not None:
        try:
            return cluster.seconds_behind(seqs, latest)
        except (BackendUnavailable, NoDataset):
            pass
    return [None] * len(seqs)


class PostgisBackend:
    """Answers from the ``spaces`` table of a PostGIS database, and of its hot-standby
    replicas when ``settings.replica_urls`` names them (:mod:`geosearch.backends.nodes`).

    Connection failures and timeouts surface as :class:`BackendUnavailable` (HTTP 503)
    when no node can answer; the backend recovers by itself when the database returns.
    A paged query that names a dataset ``version`` is answered only by a node that serves
    it (:class:`StaleVersion` when none does).
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.database_url:
            raise ValueError("PostgisBackend needs settings.database_url")
        self.settings = settings
        self.dsn = libpq_url(settings.database_url)
        self.cluster = Nodes.from_settings(settings, settings.database_url)
        self._term_counts = TermCounts(self.cluster.read)

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgisBackend:
        """A backend on ``settings.database_url`` (and its replicas) with its pools and
        statement timeout."""
        return cls(settings)

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version in ``dataset_state``; NoDataset when nothing was loaded."""
        version, _ = self.data_stamp()
        return version

    def data_stamp(self) -> tuple[str, int]:
        """The dataset version and the change feed's last committed seq, read in one
        statement: a write commits its row and its seq together."""
        stamp, _ = self.cluster.read_stamped(DATA_STAMP_SQL, {})
        return stamp

    def radius(self, query: RadiusQuery) -> Page:
        """``ST_DWithin`` pre-filter, exact ``ST_Distance`` decision and order."""
        return self._page(query, distances=True)

    def nearest(self, query: NearestQuery) -> Hits:
        """KNN bounds the k-th distance; every space within the bound is then ranked. With
        text, the rarest term's words, when few and all in the word plane, are searched
        there (:meth:`_nearest_in_plane`); else a rare term's spaces are ranked
        (:meth:`_text_driven`), or the walk outwards checks the text as it goes."""
        terms = self._term_counts.lookup(query.filters.text) if query.filters.text else None
        if terms is not None and terms.plane is not None and (
                hits := self._nearest_in_plane(query, terms.plane)) is not None:
            return hits
        by_text = terms is not None and self._text_driven(terms, query.k)
        _, page = self.cluster.read_at_version(*statement(query, by_text))
        if not page and query.filters.text and not by_text:  # the walk met too few
            _, page = self.cluster.read_at_version(*statement(query, by_text=True))
        return _distance_hits(page)

    def _nearest_in_plane(self, query: NearestQuery, plane: Plane) -> Hits | None:
        """Nearest with text in the word plane (:func:`.statements.plane_statement`); a
        bound beyond its box reads the strips of its cap in a second statement. None when
        the dataset is not the one whose words ``plane`` names (a load since the term
        counts were read: they are read again)."""
        sql, params = plane_statement(query, plane.words)
        _, rows = self.cluster.read_stamped(sql, params, generic=True)
        if not self._serves(rows, plane):
            return None
        _, kth, *_ = rows[0]
        cap = math.inf if query.max_distance_m is None else query.max_distance_m
        if math.isinf(kth):  # every word's walk ended: these are all the matches
            walked = {space_id: (d, feature)  # a space on several words' walks once
                      for _, _, near, space_id, d, feature in rows if near is False}
            kept = sorted((d, space_id, feature)
                          for space_id, (d, feature) in walked.items() if d <= cap)
            return Hits([space_id for _, space_id, _ in kept],
                        [feature for _, _, feature in kept], [d for d, _, _ in kept])
        if kth <= params["box_reach"]:  # the statement ranked the matches in the box
            ids: list[str] = []
            heads: list[bytes] = []
            distances: list[float] = []
            for _, _, near, space_id, d, feature in rows:
                if near and d <= cap:
                    ids.append(space_id)
                    heads.append(feature)
                    distances.append(d)
            return Hits(ids, heads, distances)
        _, rows = self.cluster.read_stamped(
            *plane_far_statement(query, plane.words, min(kth, cap)), generic=True)
        if not self._serves(rows, plane):
            return None
        _, page = versioned_page(rows)
        return _distance_hits(page)

    def _serves(self, rows: Rows, plane: Plane) -> bool:
        """Whether a statement's rows (the dataset version first) come from the dataset
        whose tiles ``plane`` holds; if not, the term counts are read again."""
        if rows:
            version, *_ = rows[0]
            if version == plane.version:
                return True
        self._term_counts.expire()
        return False

    def _text_driven(self, terms: Lookup, k: int) -> bool:
        """Whether the rarest term is rare enough to rank its own spaces first: walking
        outwards meets a share s of matches, about k / s spaces for k of them, against
        the n = s N spaces it has: the walk is cheaper past n = sqrt(k N) (at 5k and 1M
        spaces, a looser threshold ranked a few thousand spaces where a walk read a few
        dozen). A walk that meets too few (the matches are far away) gives way to the
        text index after WALK_MAX. The counts are the process's copy
        (:class:`TermCounts`)."""
        return terms.matches <= math.sqrt(k * terms.total)

    def polygon(self, query: PolygonQuery) -> Page:
        """``ST_Covers`` on geometry; by id, or by distance from the origin."""
        return self._page(query, distances=query.origin is not None)

    def list(self, query: ListQuery) -> Page:
        """Every active space that passes the filters, by id."""
        return self._page(query, distances=False)

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes built by PostGIS (``ST_AsMVT``), and the dataset
        version they were read from."""
        version, page = self.cluster.read_at_version(*tile_statement(query, mvt=True))
        for _, mvt in page:  # one row, none for an empty tile
            return bytes(mvt), version
        return b"", version

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's features (the rows :meth:`tile_mvt` encodes)."""
        version, page = self.cluster.read_at_version(*tile_statement(query, mvt=False))
        _, ids, names, amenities, counts, world_x, world_y, _ = _columns(page, 8)
        return TileFeatures(query.z, query.x, query.y, np.array(world_x, dtype=float),
                            np.array(world_y, dtype=float),
                            np.array([count or 1 for count in counts], dtype=np.int64),
                            list(ids), list(names), list(amenities), version)

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """``count(*)`` of the query's rows (from a node serving ``query.version`` when
        it names one)."""
        _, page = self.cluster.read_at_version(*count_statement(query), query.version)
        [(_, count)] = page  # one row
        return int(count)

    def explain(self, query: Query) -> str:
        """PostgreSQL's plan for a query object (``EXPLAIN``), e.g. to check index use."""
        sql, params = statement(query)
        return "\n".join(line for (line,) in self.cluster.read(f"EXPLAIN {sql}", params))

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        _, page = self.cluster.read_at_version(SPACE_SQL, {"id": space_id})
        return next((space_from_head(feature) for _, feature in page), None)

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        _, page = self.cluster.read_at_version(AMENITY_COUNTS_SQL, {})
        counts = {a: int(n) for _, a, n in page}
        return {a.value: counts.get(a.value, 0) for a in Amenity}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS, by id."""
        return pd.DataFrame(self.cluster.read(ACTIVE_FRAME_SQL, {}),
                            columns=list(ACTIVE_FRAME_COLUMNS))

    def nodes(self) -> NodeStates:
        """Every node: role, health, dataset version, the change feed's seq it has applied
        (``applied_seq``) and how far behind the primary it is: ``lag_seq`` changes,
        ``lag_seconds`` since the first of them committed (0 when it lacks none); a
        replica's ``lag_bytes`` of WAL not yet replayed and whether reads go to it
        (``in_rotation``). A lag the primary cannot tell now is None."""
        primary, *replicas = states = [_node_state(self.cluster, n) for n in self.cluster.all()]
        latest, primary_lsn = primary.get("applied_seq"), primary.pop("lsn", None)
        if latest is not None:
            primary.update(lag_seq=0, lag_seconds=0.0)
        answered = [s for s in replicas if "applied_seq" in s]
        behind = _seconds_behind(self.cluster, [s["applied_seq"] for s in answered], latest)
        for state, seconds in zip(answered, behind, strict=True):
            state.update(lag_seq=None if latest is None
                         else max(0, latest - state["applied_seq"]), lag_seconds=seconds)
        for state, node in zip(replicas, self.cluster.replicas, strict=True):
            lsn = state.pop("lsn", None)
            state.setdefault("lag_seq", None)
            state.setdefault("lag_seconds", None)
            state.update(lag_bytes=None if primary_lsn is None or lsn is None
                         else max(0, _lsn(str(primary_lsn)) - _lsn(str(lsn))),
                         in_rotation=node.in_rotation)
        return states

    def close(self) -> None:
        """Close this process' pools."""
        self.cluster.close()

    # -- paging -------------------------------------------------------------------------

    def _page(self, query: PagedQuery, distances: bool) -> Page:
        """Run a paged statement: it fetches limit + 1 rows to know whether more exist,
        and reads the dataset version in the same statement (from a node that serves
        ``query.version`` when the query names one)."""
        version, rows = self.cluster.read_at_version(*statement(query), query.version)
        limit = query.limit
        page = rows[:limit]
        if len(rows) <= limit:
            next_after: tuple | None = None
        elif distances:
            _, last_id, last_d, _, walk = page[-1]
            next_after = (last_d, last_id, walk)
        else:
            _, last_id, _ = page[-1]
            next_after = (last_id,)
        return Page(_distance_hits(page) if distances else _id_hits(page), next_after,
                    version)
