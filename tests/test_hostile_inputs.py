"""Inputs that crashed a worker or answered 500 (issue 25), on both backends: CQL2 filters
the native parser overflowed its stack on, filters that parse but do not map onto the
search filters, cursors of the wrong shape, polygon bodies of hostile numbers, ring
counts and nesting. Each is a 400 problem+json naming ``filter``, ``cursor`` or ``body``,
never a 5xx; the inputs are generated (depth, operator, the position of the bad value),
and the limits let what is just within them through."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import orjson
import pytest

from geosearch.api import create_app
from geosearch.api.cql import (
    MAX_FILTER_CHARS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_OPERATORS,
    MAX_PREFIX_RUN,
)
from geosearch.api.cursor import MAX_CURSOR_CHARS
from geosearch.api.geojson import MAX_JSON_CONTAINERS, MAX_JSON_DEPTH, MAX_RINGS
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot

ITEMS = "/ogc/collections/spaces/items"
AS_IS = "()=,'"  # characters of a filter sent unescaped
SQUARE = [[13.2, 52.4], [13.6, 52.4], [13.6, 52.6], [13.2, 52.6], [13.2, 52.4]]


@pytest.fixture
def api(feed_backend):
    """A test client over the feed on the backend of ``backend_kind``."""
    return create_app(Settings(heavy_rate_limit=""), backend=feed_backend).test_client()


def problem(resp, param: str) -> str | None:
    """What is wrong with ``resp`` as the 400 naming ``param`` (None when nothing)."""
    text = resp.get_data(as_text=True)[:200]
    if resp.status_code != 400 or resp.content_type != "application/problem+json":
        return f"{resp.status_code} {text}"
    errors = resp.get_json()["errors"]
    if [e["param"] for e in errors] != [param] or not errors[0]["message"]:
        return f"names {[e['param'] for e in errors]}, not {param}: {text}"
    return None


def message(resp, param: str) -> str:
    """The message of a 400 naming ``param`` (asserted)."""
    found = problem(resp, param)
    assert found is None, found
    return resp.get_json()["errors"][0]["message"]


def assert_all_refused(answers: Iterator[tuple[str, object]], param: str) -> None:
    """Every (input, response) is a 400 naming ``param``; the failures listed together."""
    failures = [f"{what[:100]!r}: {found}" for what, resp in answers
                if (found := problem(resp, param)) is not None]
    assert not failures, "\n".join(failures[:20])


def filtered(text: str) -> str:
    """The items URL filtered by ``text``; brackets, quotes, commas and ``=`` are sent as
    they are (they need no escaping), so that a long filter fits the request line."""
    return f"{ITEMS}?filter={quote(text, safe=AS_IS)}"


# -- CQL2 text the native parser recursed on until its stack overflowed ------------------

def stack_overflows() -> Iterator[str]:
    """Filters nested deep enough to overflow the parser's stack, each within the request
    line: brackets, prefix operators and calls, around or inside a predicate."""
    yield "(" * 2000 + "country='DE'" + ")" * 2000
    yield "-" * 4000 + "1=1"
    yield "capacity>=" + "-" * 7000 + "1"
    yield "country='DE' AND " + "NOT(" * 1500 + "city='x'" + ")" * 1500
    yield "capacity>=" + "-(" * 2500 + "1" + ")" * 2500
    yield "f((" * 1500 + "1" + "))" * 1500 + "=1"
    yield "A_CONTAINS(amenities," + "(" * 3500 + "'wifi'" + ")" * 3500 + ")"
    yield "city='x' AND (" + "(" * 3000 + "capacity>1" + ")" * 3000 + ")"


SERVE = """
import json, sys
from geosearch.api import create_app
from geosearch.settings import Settings
args = json.load(sys.stdin)
client = create_app(Settings(heavy_rate_limit="", **args["settings"])).test_client()
for url in args["urls"]:
    resp = client.get(url)
    params = [e["param"] for e in (resp.get_json(silent=True) or {}).get("errors", [])]
    print(json.dumps([resp.status_code, params]), flush=True)
"""


def test_filters_that_overflowed_the_parser_are_400s_and_the_worker_lives(
        backend_kind, feed_backend, feed_result, tmp_path):
    # in a process of its own, with the backend as the server opens it (the snapshot of
    # make run, or the database): a stack overflow there kills that process, not the tests
    if backend_kind == "memory":
        settings = {"snapshot": str(tmp_path / "snapshot")}
        write_snapshot(feed_result.frame, settings["snapshot"], feed_result.meta())
    else:
        settings = {"database_url": feed_backend.settings.database_url}
    urls = [filtered(text) for text in stack_overflows()] + [filtered("country='DE'")]
    assert all(len(url) < 8000 for url in urls)
    done = subprocess.run([sys.executable, "-c", SERVE], capture_output=True, text=True,
                          input=json.dumps({"settings": settings, "urls": urls}), timeout=600)
    assert done.returncode == 0, f"the worker died ({done.returncode}): {done.stderr[-1500:]}"
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert answers == [[400, ["filter"]]] * (len(urls) - 1) + [[200, []]]


# -- the bounds of the text ---------------------------------------------------------------

def test_filter_text_is_bounded_before_it_is_parsed(api):
    supported = "country='DE'"
    for depth in (0, 1, MAX_FILTER_DEPTH):
        assert api.get(filtered("(" * depth + supported + ")" * depth)).status_code == 200
    # brackets count however they open; prefix operators count across them
    wraps = {"(": "deep", "f(": "deep", "CASEI(": "deep", "NOT(": "in a row", "-(": "in a row"}
    for depth in (MAX_FILTER_DEPTH + 1, 100, 500):
        for wrap, says in wraps.items():
            text = "capacity>=" + wrap * depth + "1" + ")" * depth
            assert says in message(api.get(filtered(text)), "filter"), text[:80]
    for run in range(1, MAX_PREFIX_RUN + 1):
        assert api.get(filtered("capacity>=" + "-" * run + "5")).status_code == 200
    for run in (MAX_PREFIX_RUN + 1, 50, 600):
        for prefix in ("-", "+", "- ", "NOT ", "-(", "NOT -"):
            text = "capacity >= 1 AND " + prefix * run + "country='DE'"
            assert "in a row" in message(api.get(filtered(text)), "filter"), text[:80]
    # OR of n countries: n comparisons and n - 1 ORs
    codes = [f"{a}{b}" for a in "ABCDEFGH" for b in "ABCDEFGH"]
    within = (MAX_FILTER_OPERATORS + 1) // 2
    assert api.get(filtered(" OR ".join(f"country='{c}'" for c in codes[:within]))
                   ).status_code == 200
    for text in (" OR ".join(f"country='{c}'" for c in codes[:within + 1]),
                 "capacity>=" + "+".join(["1"] * (MAX_FILTER_OPERATORS + 1)),
                 "city='x' AND " + "=".join(["1"] * 600),
                 " AND ".join(["1=1"] * 300)):
        assert "operators" in message(api.get(filtered(text)), "filter"), text[:80]
    long = "city='" + "x" * (MAX_FILTER_CHARS - 7) + "'"
    assert "characters" in message(api.get(filtered(long + " ")), "filter")
    assert "200 characters" in message(api.get(filtered(long)), "filter")


# -- filters that parse but are not what the API maps ---------------------------------------

# (Basic CQL2 makes 1=1, TRUE, NOT, IS NULL and every comparison valid: not here)
NOT_PREDICATES = ["1", "NULL", "'DE'", "f()", "country", "capacity+1>2",
                  "A_CONTAINS(amenities)", "S_INTERSECTS(geometry)", "name LIKE 'x%'"]
# A comparison with a bad value: the template, and values of the wrong type, range or length
BAD_VALUES = {
    "capacity>={}": ["1e999", "-1e999", "9" * 400, "1e308*10", "TRUE", "NULL", "'10'", "2-3",
                     "DATE('2020-01-01')", "1e7", "(1,2)"],
    "capacity>{}": ["1e999", "-" + "9" * 400, "FALSE", "'x'", "1000000"],
    "country={}": ["'ZZZZZ'", "''", "'D'", "'1A'", "'ÄÖ'", "'DE,FR'", "5", "NULL", "TRUE"],
    "city={}": ["'" + "x" * 201 + "'", "'" + "y" * 3000 + "'", "5", "NULL", "TRUE", "1e999"],
    "S_INTERSECTS(geometry,{})": [
        "BBOX(1e999,0,1,1)", "BBOX(0,0,-1e999,1)", "BBOX(-500,0,1,1)", "BBOX(0,1,1,0)",
        "BBOX(0,0)", "BBOX(0,0,1,1,2)", "POINT(1 2)", "POLYGON((0 0,1 0,1 1,0 0.5))",
        "POLYGON((0 0,1e999 0,1 1,0 0))", "POLYGON((0 0,200 0,1 1,0 0))",
        "POLYGON((0 0,1 1,1 0,0 1,0 0))", "'x'", "5"],
}
# Whole numbers beyond any capacity: refused as the one comparison of a capacity filter,
# but a Basic CQL2 expression (OR) compares them as written (it matches nothing)
BEYOND_CAPACITY = {"capacity>=1e7", "capacity>1000000"}
# A list with one bad member, at each position in turn
BAD_MEMBERS = {"country IN ({})": ["'ZZZZZ'", "5", "NULL", "'D'"],
               "A_CONTAINS(amenities,({}))": ["'sauna'", "1", "NULL"],
               "A_OVERLAPS(amenities,({}))": ["'sauna'", "TRUE"]}
# A supported conjunct of each queryable
COMPANIONS = {"country": "country='DE'", "capacity": "capacity>=2", "city": "city='Berlin'",
              "amenities": "A_OVERLAPS(amenities,('wifi'))"}
GOOD_MEMBERS = {"country IN ({})": "'DE'", "A_CONTAINS(amenities,({}))": "'wifi'",
                "A_OVERLAPS(amenities,({}))": "'coffee'"}


def unsupported_filters() -> Iterator[str]:
    """Each bad node or value alone, then between two supported conjuncts of other
    queryables (joined by AND) or of country (joined by OR)."""
    bad = list(NOT_PREDICATES)
    for template, values in BAD_VALUES.items():
        bad += [template.format(v) for v in values]
    for template, values in BAD_MEMBERS.items():
        for value in values:
            for size in (1, 3):
                for at in range(size):
                    members = [GOOD_MEMBERS[template]] * size
                    members[at] = value
                    bad.append(template.format(",".join(members)))
    for node in bad:
        yield node
        yield f"({node})"
        others = [text for name, text in COMPANIONS.items() if name not in node][:2]
        joins = [(" AND ", others)]
        if node not in BEYOND_CAPACITY:
            joins.append((" OR ", ["country='DE'", "country='FR'"]))
        for joiner, pair in joins:
            for at in range(3):
                yield joiner.join([*pair[:at], node, *pair[at:]])


def test_filters_that_parse_but_do_not_map_are_400s_naming_filter(api):
    assert_all_refused(((text, api.get(filtered(text))) for text in unsupported_filters()),
                       "filter")


def test_the_reported_filters_say_what_is_valid(api):
    said = {text: message(api.get(filtered(text)), "filter") for text in (
        "1 OR 1=1", "capacity>=1e999", "country IN ('ZZZZZ')", "city='" + "x" * 300 + "'")}
    assert "Basic CQL2 on country, city and capacity" in said["1 OR 1=1"]
    assert "finite number" in said["capacity>=1e999"]
    assert "ISO 3166-1 alpha-2" in said["country IN ('ZZZZZ')"]
    assert "at most 200 characters" in said["city='" + "x" * 300 + "'"]


# -- cursors ------------------------------------------------------------------------------

FIRST_PAGES = [  # (url, polygon body) of a first page that has a next one
    ("/v1/spaces?limit=2", None),
    ("/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=50000&limit=2", None),
    ("/v1/spaces/bbox?bbox=-10,35,30,60&limit=2", None),
    ("/v1/spaces/bbox?bbox=-10,35,30,60&lat=52.5&lon=13.4&limit=2", None),
    ("/v1/spaces/polygon?limit=2", {"type": "Polygon", "coordinates": [SQUARE]}),
    ("/v1/spaces/polygon?limit=2&lat=52.5&lon=13.4",
     {"type": "Polygon", "coordinates": [SQUARE]}),
    (f"{ITEMS}?limit=2", None),
]
# JSON wrong wherever a value of the cursor goes, then wrong where text or a number goes
WRONG = ["NaN", "Infinity", "-Infinity", "1e999", "9" * 400, "-" + "9" * 400, "true",
         "false", "null", "[]", "{}", "[" * 60 + "]" * 60, "[" * 1100 + "]" * 1100,
         '{"$ne": 1}']
WRONG_TEXT = [*WRONG, r'"a\u0000b"', r'"\ud800"', r'"x\udfff"', r'"\u001b[31m"',
              r'"\u0085"', "1.5", "7", "18446744073709551616"]
WRONG_NUMBER = [*WRONG, '"1.5"', '""', "7", "-7"]
# A walk's seq: a whole number from 0 to 2**53 - 1
WRONG_SEQ = [*WRONG, '"7"', '""', "1.5", "7.0", "-7", str(2**53), "18446744073709551616"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forged(issued: dict) -> Iterator[str]:
    """Cursors like ``issued`` with one thing wrong: each value in turn, its shape, its
    encoding."""
    version, query, after = (orjson.dumps(issued[k]).decode() for k in ("v", "q", "a"))
    members = [orjson.dumps(v).decode() for v in issued["a"]]

    def doc(v: str = version, q: str = query, a: str = after) -> str:
        return b64(f'{{"v":{v},"q":{q},"a":{a}}}'.encode())

    for wrong in WRONG_TEXT:
        yield doc(v=wrong)
    for at, value in enumerate(issued["a"]):
        wrongs = {str: WRONG_TEXT, float: WRONG_NUMBER, int: WRONG_SEQ}[type(value)]
        for wrong in wrongs:
            yield doc(a="[" + ",".join([*members[:at], wrong, *members[at + 1:]]) + "]")
    yield doc(a="[" + ",".join(members[:-1]) + "]")
    yield doc(a="[" + ",".join([*members, members[-1]]) + "]")
    for wrong in ('"0123"', '"0123456789ABCDEF"', '"g123456789abcdef"', "12345678"):
        yield doc(q=wrong)
    yield b64(orjson.dumps({**issued, "x": 1}))
    for missing in ("v", "q", "a"):
        yield b64(orjson.dumps({k: v for k, v in issued.items() if k != missing}))
    for whole in ([issued], "x", 5, None):
        yield b64(orjson.dumps(whole))
    yield b64(b"[" * 1500 + b"]" * 1500)
    yield b64(b"\xff\xfe" + orjson.dumps(issued))
    issued_text = b64(orjson.dumps(issued))
    yield issued_text + "A" * (MAX_CURSOR_CHARS - len(issued_text) + 4)
    yield issued_text[:-1]
    yield "A" * 41  # no base64 text is 1 longer than a multiple of 4
    for junk in ("!", "%2B", "%2F", "%20", "."):
        yield issued_text[:8] + junk + issued_text[8:]


def test_forged_cursors_are_400s_naming_cursor(api):
    answers = []
    for url, polygon in FIRST_PAGES:
        def fetch(cursor: str | None = None, url: str = url, polygon: dict | None = polygon):
            full = url if cursor is None else f"{url}&cursor={cursor}"
            return api.post(full, json=polygon) if polygon else api.get(full)

        first = fetch()
        assert first.status_code == 200 and "next" in first.get_json(), url
        issued_text = first.get_json()["next"]
        issued = orjson.loads(base64.urlsafe_b64decode(issued_text + "=" * (-len(issued_text) % 4)))
        assert fetch(b64(orjson.dumps(issued))).status_code == 200, url
        answers += [(f"{url} {cursor}", fetch(cursor)) for cursor in forged(issued)]
    assert_all_refused(iter(answers), "cursor")


# -- polygon bodies -----------------------------------------------------------------------

BAD = '"@bad@"'  # where the bad number goes in a body's text
OVERFLOWING = ["1" + "0" * 400, "-1" + "0" * 400, "1e999", "-1e999", "NaN", "Infinity",
               "-Infinity", "true", "null", '"13.3"', "[]"]
OUT_OF_RANGE = ["18446744073709551616", "1e300", "-1e300", "180.0000001", "-180.5"]


def shapes() -> Iterator[tuple[dict, str]]:
    """Polygon bodies with one coordinate replaced by the placeholder, and the JSON
    Pointer of that position: in a shell, in a hole, in a later part, in a Feature."""
    hole = [[13.3, 52.45], [13.3, 52.5], [13.4, 52.5], [13.3, 52.45]]
    for axis in (0, 1):
        for where, rings in ((0, [SQUARE]), (2, [SQUARE]), (4, [SQUARE, hole])):
            ring = len(rings) - 1
            bad = [list(map(list, r)) for r in rings]
            bad[ring][where if ring == 0 else 1][axis] = "@bad@"
            vertex = where if ring == 0 else 1
            doc = {"type": "Polygon", "coordinates": bad}
            yield doc, f"/coordinates/{ring}/{vertex}"
            yield ({"type": "MultiPolygon", "coordinates": [[SQUARE], bad]},
                   f"/coordinates/1/{ring}/{vertex}")
            yield ({"type": "Feature", "properties": {}, "geometry": doc},
                   f"/geometry/coordinates/{ring}/{vertex}")


def post(api, text: str):
    return api.post("/v1/spaces/polygon", data=text, content_type="application/json")


def test_bodies_with_numbers_beyond_a_coordinate_are_400s_naming_body(api):
    texts = [(json.dumps(doc), pointer) for doc, pointer in shapes()]
    assert_all_refused(((text.replace(BAD, n), post(api, text.replace(BAD, n)))
                        for text, _ in texts for n in OVERFLOWING), "body")
    for text, pointer in texts:  # numbers JSON holds, out of a coordinate's range
        for number in OUT_OF_RANGE:
            said = message(post(api, text.replace(BAD, number)), "body")
            assert said.startswith(f"{pointer}: "), (pointer, said)


def squares(n: int, size: float = 0.2, step: float = 0.5, start: float = 0.5
            ) -> list[list[list[float]]]:
    """``n`` small square rings in rows ``step`` apart, inside the box (0, 0)-(50, 50)."""
    per_row = int(49 / step)
    return [[[x, y], [x, y + size], [x + size, y + size], [x + size, y], [x, y]]
            for i in range(n)
            for x, y in [(start + step * (i % per_row), start + step * (i // per_row))]]


def test_rings_are_bounded_in_all(api):
    shell = [[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0], [0.0, 0.0]]
    holes = squares(MAX_RINGS)
    assert post(api, json.dumps({"type": "Polygon", "coordinates": [shell, *holes[:-1]]})
                ).status_code == 200
    for rings, pointer in (
            ([shell, *holes], "/coordinates"),
            ([shell, *squares(2 * MAX_RINGS, 0.05, 0.25)], "/coordinates")):
        for doc, at in (({"type": "Polygon", "coordinates": rings}, pointer),
                        ({"type": "Feature", "properties": None,
                          "geometry": {"type": "Polygon", "coordinates": rings}},
                         "/geometry" + pointer)):
            said = message(post(api, json.dumps(doc)), "body")
            assert said.startswith(f"{at}: ") and "rings" in said, said
    # parts of a shell and a hole each, and one more; islands of one ring each
    annuli = zip(squares(MAX_RINGS // 2, 0.4, 1.0), squares(MAX_RINGS // 2, 0.2, 1.0, 0.6),
                 strict=True)
    for parts in ([*map(list, annuli), [shell]], [[s] for s in squares(MAX_RINGS + 1)]):
        assert "rings" in message(post(api, json.dumps(
            {"type": "MultiPolygon", "coordinates": parts})), "body")


def test_json_bodies_are_bounded_in_depth_and_containers(api):
    def nested(depth: int) -> object:
        inner: object = 1
        for _ in range(depth):
            inner = {"a": inner}
        return inner

    polygon = {"type": "Polygon", "coordinates": [SQUARE]}
    feature = {"type": "Feature", "geometry": polygon}
    # the Feature's object is one level; its properties object the next
    assert post(api, json.dumps({**feature, "properties": nested(MAX_JSON_DEPTH - 1)})
                ).status_code == 200
    deep = [json.dumps({**feature, "properties": nested(depth)})
            for depth in (MAX_JSON_DEPTH, 100, 900)]
    deep += ["[" * depth + "]" * depth for depth in (MAX_JSON_DEPTH + 1, 1025, 5000)]
    deep.append(json.dumps(polygon).replace("[[[", "[" * 40 + "[[[").replace("]]]",
                                                                          "]]]" + "]" * 40))
    for text in deep:
        said = message(post(api, text), "body")
        assert "nested" in said or "not valid JSON" in said, said
    wide = [json.dumps({**feature, "properties": [[]] * MAX_JSON_CONTAINERS}),
            "[" + ",".join(["[]"] * 300_000) + "]", "[" * 100_000 + "]" * 100_000]
    for text in wide:
        assert "arrays and objects" in message(post(api, text), "body")
