"""Text search (``q``): the same ids from both backends as from a brute-force reading of
every space, on generated names (accents, scripts, ligatures, digits, punctuation), alone
and combined with every geographic query, filters and paging; and over HTTP."""

from __future__ import annotations

import pytest

from geosearch.geo import bbox_area
from geosearch.model import (
    Amenity,
    Filters,
    ListQuery,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
    TileQuery,
)
from geosearch.testing import oracle
from geosearch.text import MAX_Q_CHARS, MAX_Q_TERMS, query_terms
from geosearch.tiles import tile_bounds, world_xy

QUERIES = ["a", "C", "é", "cafe", "CAFÉ", "Café", "caf mun", "munchen", "MÜNCH", "strasse",
           "straße", "STRA", "finance", "fi", "xii", "東京", "日本", "москва", "МОС", "αθηνα",
           "ἀθ", "istanbul", "i", "naive", "naïve", "o brien", "brien", "work club",
           "work-club", "work_club", "hub4", "42", "4", "1", "ｗｏｒｋ", "angstrom", "sao",
           "krakow", "łodz", "lodz", "ørsted", "orsted", "dzemal", "ǆ", "regus spaces",
           "co work", "zzz", "cafe zzz", "rue", "hauptstr", "norrebro", "shibuya 2",
           "chome", "tokyo", "zurich", "berlin paris", "!!!", "", "   "]
BERLIN = Point(52.52, 13.40)


@pytest.fixture(params=["memory", "postgis"])
def text_backend(request):
    return request.getfixturevalue(f"{request.param}_text")


@pytest.fixture(scope="module")
def frame(text_result):
    f = text_result.frame
    return f[f["status"] == "active"].reset_index(drop=True)


def walk(fetch) -> list[str]:
    ids, after, version = [], None, None
    while True:
        page = fetch(after, version)
        ids += [h.space.id for h in page.hits]
        if page.next_after is None:
            return ids
        after, version = page.next_after, page.version


def expected_terms(q: str) -> set[str]:
    return oracle.folded_words(q)


@pytest.mark.parametrize("q", QUERIES)
def test_q_alone_gives_the_spaces_every_term_is_a_prefix_of_a_word_of(text_backend, frame, q):
    terms = query_terms(q)
    assert set(terms) == expected_terms(q)
    f = Filters(text=terms)
    got = walk(lambda after, version: text_backend.list(ListQuery(f, 37, after, version)))
    want = [i for i, _ in oracle.area(frame, bbox_area(-180, -90, 180, 90), f)]
    assert got == want


@pytest.mark.parametrize("q", ["cafe", "a", "munch", "42", "東京", "zzz", "work club"])
def test_q_combines_with_radius_nearest_areas_filters_and_tiles(text_backend, frame, q):
    f = Filters(text=query_terms(q))
    lat, lon = BERLIN.lat, BERLIN.lon
    radius = text_backend.radius
    got = walk(lambda after, version: radius(RadiusQuery(BERLIN, 8000, f, 11, after, version)))
    assert got == [i for i, _ in oracle.radius(frame, lat, lon, 8000, f)]

    near = text_backend.nearest(NearestQuery(BERLIN, 7, None, f))  # q applies before k
    assert [h.space.id for h in near] == [i for i, _ in oracle.nearest(frame, lat, lon, 7,
                                                                       None, f)]

    both = Filters(all_amenities=frozenset({Amenity.WIFI}), min_capacity=10,
                   text=query_terms(q))
    area = bbox_area(13.2, 52.4, 13.6, 52.65)
    got = walk(lambda after, version: text_backend.polygon(
        PolygonQuery(area, both, None, 5, after, version)))
    assert got == [i for i, _ in oracle.area(frame, area, both)]

    x, y = world_xy([lat], [lon])
    for z in (4, 9, 13):
        tile = TileQuery(z, int(x[0] * 2**z), int(y[0] * 2**z), f)
        counted = int(text_backend.tile(tile).count.sum())
        assert counted == len(oracle.area(frame, bbox_area(*tile_bounds(z, tile.x, tile.y)), f))


def test_both_backends_give_the_same_ids(memory_text, postgis_text):
    for q in QUERIES:
        f = Filters(text=query_terms(q))
        mine = walk(lambda a, v, f=f: memory_text.list(ListQuery(f, 500, a, v)))
        theirs = walk(lambda a, v, f=f: postgis_text.list(ListQuery(f, 500, a, v)))
        assert mine == theirs, q


def test_too_long_or_too_many_words_is_an_error():
    assert len(query_terms("x" * MAX_Q_CHARS)) == 1
    with pytest.raises(ValueError, match="at most 200"):
        query_terms("x" * (MAX_Q_CHARS + 1))
    assert len(query_terms(" ".join(f"w{i}" for i in range(MAX_Q_TERMS)))) == MAX_Q_TERMS
    with pytest.raises(ValueError, match="at most 10 words"):
        query_terms(" ".join(f"w{i}" for i in range(MAX_Q_TERMS + 1)))
    with pytest.raises(ValueError):
        Filters(text=("Café",))  # not folded: build terms with query_terms


# -- HTTP -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/spaces?q={}", "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=50000&q={}",
    "/v1/spaces/nearest?lat=52.52&lon=13.405&k=100&q={}",
    "/v1/spaces/bbox?bbox=-180,-90,180,90&q={}", "/ogc/collections/spaces/items?q={}",
    "/v1/tiles/0/0/0.json?q={}"])
@pytest.mark.parametrize("q", [MAX_Q_CHARS * "a" + "a", " ".join(["w"] * 5 + list("abcdef"))])
def test_a_q_over_the_limits_is_a_400_that_says_so(client, path, q):
    response = client.get(path.format(q))
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert errors[0]["param"] == "q" and "at most" in errors[0]["message"]


def test_q_over_http_matches_the_oracle_on_the_feed(client, feed_result):
    frame = feed_result.frame[feed_result.frame["status"] == "active"]
    for q in ("work", "Büro", "hub", "SPACE", "zz"):
        ids, url = [], f"/v1/spaces?q={q}&limit=100"
        while url:
            body = client.get(url).get_json()
            ids += [f["id"] for f in body["features"]]
            url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        f = Filters(text=query_terms(q))
        assert ids == [i for i, _ in oracle.area(frame, bbox_area(-180, -90, 180, 90), f)], q


@pytest.mark.parametrize(("text_first", "walk_max"), [(False, 5000), (False, 3), (True, 5000)],
                         ids=["walk-outwards", "walk-then-text-index", "text-index"])
def test_postgis_nearest_with_q_is_right_every_way_it_can_run(postgis_text, frame, monkeypatch,
                                                              text_first, walk_max):
    """A common term walks outwards from the origin (and, meeting too few matches within
    WALK_MAX spaces, asks the text index), a rare one ranks its own spaces: every way
    gives the oracle's answer (forced here whatever the terms' counts)."""
    from geosearch.backends import postgis, statements

    monkeypatch.setattr(postgis.PostgisBackend, "_text_driven", lambda *_: text_first)
    monkeypatch.setattr(statements, "WALK_MAX", walk_max)
    statements._nearest_sql.cache_clear()
    try:
        for q in ("cafe", "a", "42", "東京", "zzz", "work club"):
            f = Filters(text=query_terms(q))
            for origin in (BERLIN, Point(35.6, 139.7), Point(-33.9, 151.2)):
                got = postgis_text.nearest(NearestQuery(origin, 6, None, f))
                want = oracle.nearest(frame, origin.lat, origin.lon, 6, None, f)
                assert [h.space.id for h in got] == [i for i, _ in want], (q, origin)
    finally:
        statements._nearest_sql.cache_clear()


@pytest.mark.parametrize("dataset", ["text", "synthetic"])
@pytest.mark.parametrize("tree_rows", [1, 10**9], ids=["word-trees", "word-scans"])
def test_memory_nearest_with_q_matches_the_oracle_anywhere(request, monkeypatch, dataset,
                                                          tree_rows):
    """The memory backend's nearest with ``q`` searches the rarest term's words (k-d
    trees of the words with many spaces, a scan of the others): from origins all over
    the globe (the poles, ±180°, far from every match), with more filters, a distance
    cap and a k beyond the matches, it gives the oracle's ids and distances."""
    import random

    from geosearch.backends import memory, memory_search, textindex

    monkeypatch.setattr(textindex, "TREE_ROWS", tree_rows)
    monkeypatch.setattr(memory_search, "_MEASURED_PER_K", 1)  # more queries take the far path
    result = request.getfixturevalue(f"{dataset}_result")
    backend = memory.MemoryBackend.from_frame(result.frame, "q")
    spaces = result.frame[result.frame["status"] == "active"].reset_index(drop=True)
    rng = random.Random(12)
    origins = [Point(90, 0), Point(-89.99, 45), Point(-17.7, 179.99), Point(64, -179.98),
               Point(0, 0), BERLIN, *(Point(rng.uniform(-90, 90), rng.uniform(-180, 180))
                                      for _ in range(14))]
    queries = ["cafe", "a", "munch", "東京", "work club", "suva", "mcm", "longy", "berl",
               "space 1", "street", "zzz"]
    wifi = frozenset({Amenity.WIFI})
    for q in queries:
        terms = query_terms(q)
        matching = spaces[oracle.passes(spaces, Filters(text=terms))]  # the oracle's, once
        for origin in origins:
            k, cap = rng.choice([1, 6, 40]), rng.choice([None, None, 300_000.0])
            f = Filters(all_amenities=wifi if rng.random() < 0.3 else frozenset(), text=terms)
            got = backend.nearest(NearestQuery(origin, k, cap, f))
            want = oracle.nearest(matching, origin.lat, origin.lon, k, cap, f)
            assert [h.space.id for h in got] == [i for i, _ in want], (origin, q, k, cap)
            assert [h.distance_m for h in got] == pytest.approx([d for _, d in want],
                                                                abs=1e-6), (origin, q)


def test_postgis_term_counts_are_the_tables_and_follow_a_new_load(pg_database, text_result,
                                                                  synthetic_result,
                                                                  monkeypatch):
    """The process's copy of ``search_words`` gives each term the sum of its words'
    spaces, as the table does (and the spaces of the map's square as the dataset's size),
    and reads the table again once a load changed the dataset."""
    from geosearch.backends import termcounts
    from geosearch.backends.base import NoDataset
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.database import make_engine
    from geosearch.settings import Settings
    from geosearch.store import load

    url = pg_database("counts")
    engine = make_engine(Settings(database_url=url))
    backend = PostgisBackend(Settings(database_url=url))
    try:
        monkeypatch.setattr(termcounts, "CHECK_EVERY_S", 0.0)
        with pytest.raises(NoDataset):  # as the query itself would
            backend._term_counts.lookup(("cafe",))
        for result, terms in ((text_result, ("cafe", "mun", "東", "zzz", "a")),
                              (synthetic_result, ("space", "suva", "1", "zzz"))):
            load(result.frame, result.meta(), engine)
            total = backend.cluster.read("SELECT tile_count FROM dataset_state", {})[0][0]
            for term in terms:
                low, high = term, term[:-1] + chr(ord(term[-1]) + 1)
                rows = backend.cluster.read("SELECT coalesce(sum(spaces), 0) FROM search_words "
                                            "WHERE word >= %(low)s AND word < %(high)s",
                                            {"low": low, "high": high})
                counts = backend._term_counts.lookup((term,))
                assert (counts.matches, counts.total) == (int(rows[0][0]), total), term
            both = backend._term_counts.lookup(terms[:2]).matches
            assert both == min(backend._term_counts.lookup((t,)).matches for t in terms[:2])
    finally:
        backend.close()
        engine.dispose()


@pytest.fixture(scope="module")
def plane_backends(pg_database, text_result, synthetic_result):
    """PostGIS over the text and the synthetic datasets loaded with every word in the word
    plane (none is common enough to be left out), so that each term can be searched
    there."""
    from geosearch import wordplane
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.database import make_engine
    from geosearch.settings import Settings
    from geosearch.store import load

    backends = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wordplane, "MAX_SHARE", 1.01)
        for name, result in (("text", text_result), ("synthetic", synthetic_result)):
            url = pg_database(f"plane_{name}")
            engine = make_engine(Settings(database_url=url))
            load(result.frame, result.meta(), engine)
            engine.dispose()
            backends[name] = (PostgisBackend(Settings(database_url=url)), result)
    yield backends
    for backend, _ in backends.values():
        backend.close()


@pytest.mark.parametrize("box_reach", [0.0, 500_000.0, float("inf")],
                         ids=["strips", "box-or-strips", "box"])
@pytest.mark.parametrize("dataset", ["text", "synthetic"])
def test_postgis_nearest_with_q_in_the_word_plane_matches_the_oracle_anywhere(
        plane_backends, monkeypatch, dataset, box_reach):
    """PostGIS searches the rarest term's words in the word plane (each word's nearest
    matches in its tile bound the k-th distance; the one box of that disk, or the strips
    of its cap, are read): from origins all over the globe (the poles, ±180°, far from
    every match), with terms of one word or hundreds, more filters, a distance cap and a
    k beyond the matches, the ids and distances are the oracle's."""
    import random

    from geosearch.backends import statements, termcounts

    monkeypatch.setattr(termcounts, "PLANE_WORDS", 10**6)
    monkeypatch.setattr(statements, "BOX_REACH_M", box_reach)
    backend, result = plane_backends[dataset]
    spaces = result.frame[result.frame["status"] == "active"].reset_index(drop=True)
    rng = random.Random(13)
    origins = [Point(90, 0), Point(-89.99, 45), Point(-17.7, 179.99), Point(64, -179.98),
               Point(0, 0), BERLIN, *(Point(rng.uniform(-90, 90), rng.uniform(-180, 180))
                                      for _ in range(10))]
    wifi = frozenset({Amenity.WIFI})
    for q in ["cafe", "a", "munch", "東京", "work club", "suva", "mcm", "longy", "berl",
              "space 1", "street", "zzz"]:
        terms = query_terms(q)
        matching = spaces[oracle.passes(spaces, Filters(text=terms))]
        plane = backend._term_counts.lookup(terms).plane
        for origin in origins:
            k, cap = rng.choice([1, 6, 40]), rng.choice([None, None, 300_000.0])
            f = Filters(all_amenities=wifi if rng.random() < 0.3 else frozenset(), text=terms)
            query = NearestQuery(origin, k, cap, f)
            got = backend._nearest_in_plane(query, plane) if plane is not None else None
            want = oracle.nearest(matching, origin.lat, origin.lon, k, cap, f)
            assert (plane is None) == matching.empty, q  # every word of a match has a tile
            if got is None:
                assert not want, (q, origin)
                continue
            assert [h.space.id for h in got] == [i for i, _ in want], (origin, q, k, cap)
            assert [h.distance_m for h in got] == pytest.approx([d for _, d in want],
                                                                abs=1e-6), (origin, q)
            assert [h.space.id for h in backend.nearest(query)] == [i for i, _ in want]


def test_the_loader_writes_the_word_plane(postgis_synthetic, synthetic_result):
    """``word_points`` holds one point per active space and word with a tile, at the
    space's longitude and latitude in the word's tile; a word has a tile unless it is in
    an eighth of the active spaces or more."""
    from geosearch.wordplane import MAX_SHARE, PITCH

    run = postgis_synthetic.cluster.read
    active = int((synthetic_result.frame["status"] == "active").sum())
    untiled = run("SELECT count(*) FILTER (WHERE tile IS NULL), count(*) FILTER (WHERE "
                  "(tile IS NULL) <> (spaces >= %(share)s * %(active)s)) FROM search_words",
                  {"share": MAX_SHARE, "active": active})[0]
    assert untiled[0] > 0 and untiled[1] == 0  # the feed's common words are left out
    points = run("SELECT (SELECT sum(spaces) FROM search_words WHERE tile IS NOT NULL), "
                 "count(*), count(DISTINCT (p.pt[0], p.place)), count(*) FILTER (WHERE "
                 "s.status = 'active' AND p.pt[1] = s.lat AND abs(p.pt[0] - w.tile * "
                 "%(pitch)s - 180 - s.lon) < 1e-6 AND w.word = ANY(tsvector_to_array("
                 "s.search))) FROM word_points p JOIN spaces s USING (place) JOIN "
                 "search_words w ON w.tile = floor(p.pt[0] / %(pitch)s)", {"pitch": PITCH})
    assert points[0][0] == points[0][1] == points[0][2] == points[0][3] > 0


def test_a_schema_older_than_the_code_is_no_dataset_not_an_error(pg_database, text_result):
    """A server started on a database whose schema predates its code (here: without the
    word plane's tiles) says so as NoDataset (HTTP 503, run the ingest to migrate)."""
    import psycopg

    from geosearch.backends.base import NoDataset
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.database import libpq_url as dsn
    from geosearch.database import make_engine
    from geosearch.settings import Settings
    from geosearch.store import load

    url = pg_database("older")
    engine = make_engine(Settings(database_url=url))
    load(text_result.frame, text_result.meta(), engine)
    engine.dispose()
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("ALTER TABLE search_words DROP COLUMN tile")
    backend = PostgisBackend(Settings(database_url=url))
    try:
        with pytest.raises(NoDataset, match="older than this release"):
            backend.nearest(NearestQuery(BERLIN, 3, None, Filters(text=("cafe",))))
    finally:
        backend.close()
