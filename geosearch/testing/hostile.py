"""A battery of hostile requests: every endpoint, every parameter and path segment, with
the inputs an attacker or a broken client sends, and inputs generated around each
parser's bounds: JSON bodies, cursors and CQL2 filters nested deep, polygons of many
rings, numbers beyond any type. Used by the tests (in-process, both backends) and by
scripts/hostile_http.py (over real sockets, with the wire-level cases of
:mod:`geosearch.testing.hostile_wire`), which judge every answer with :func:`judge`."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from geosearch.api.cql import MAX_FILTER_CHARS, MAX_FILTER_DEPTH, MAX_PREFIX_RUN
from geosearch.api.geojson import MAX_JSON_DEPTH, MAX_RINGS

# Query values: control characters, bad UTF-8 (a lone surrogate, beyond U+10FFFF), numbers
# no parser should take, SQL text, traversal, very long text, other scripts' digits, JSON
# where text is expected.
HUGE = "1" + "0" * 400  # beyond every integer and float type
VALUES = [
    "%00", "%00'", "a%01b", "%7F", "%C2%85", "%0D%0AX-Injected:%201", "%C0%AF", "%FF", "%ED%A0%80",
    "a%ED%BF%BFb", "%F4%90%80%80", "99999999999999999999999999999",
    "-99999999999999999999999999999",
    HUGE, "-" + HUGE, "1" * 4000, "1e309", "-1e309", "1e-400", "nan", "NaN", "inf", "-Infinity",
    "0x10", "1_000", "%D9%A1%D9%A2", "+", "-", ".", "1.2.3", "1,2", "", "%20", "'%20OR%201=1--",
    "1;DROP%20TABLE%20spaces", "%27)%20UNION%20SELECT%20version()--", "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f", "a" * 3000, "9" * 5000, "9" * 7000 + "x", "%5B%5D", "%7B%7D", "null", "true",
    "wifi,%00", "wifi" + ",wifi" * 500,
]
ORIGIN = "lat=52.52&lon=13.405"
ITEMS = "/ogc/collections/spaces/items"
POLYGON_SEARCH = "/v1/spaces/polygon"  # posted a polygon; the others are GET
# Every endpoint with the query parameters it reads, and a valid base query to vary.
ENDPOINTS: dict[str, tuple[str, list[str]]] = {
    "/v1/spaces/radius": (f"{ORIGIN}&radius_m=2000", ["lat", "lon", "radius_m", "limit",
                                                      "cursor"]),
    "/v1/spaces/nearest": (ORIGIN, ["lat", "lon", "k", "max_distance_m"]),
    "/v1/spaces/bbox": ("bbox=13.3,52.4,13.5,52.6", ["bbox", "lat", "lon", "limit", "cursor"]),
    "/v1/spaces": ("", ["limit", "cursor"]),
    POLYGON_SEARCH: ("limit=5", ["limit", "cursor", "lat", "lon"]),
    "/v1/amenities": ("", ["x"]),
    "/v1/coverage/countries": ("", ["min_population", "walk_m", "res", "amenities"]),
    "/v1/coverage/cities": ("country=NZ", ["country", "min_population", "walk_m", "res",
                                           "amenities"]),
    "/v1/coverage/hexes": ("country=NZ", ["country", "min_population", "walk_m", "res",
                                          "amenities"]),
    ITEMS: ("", ["bbox", "limit", "cursor", "filter", "filter-lang"]),
    "/v1/tiles/10/550/335.mvt": ("", []),
    "/v1/tiles/4/8/5.json": ("", []),
    "/healthz": ("", ["x"]),
    "/readyz": ("", ["x"]),
    "/openapi.json": ("", ["x"]),
}
FILTERS = ["amenities", "amenities_any", "country", "city", "min_capacity", "q"]
FILTERED = {"/v1/spaces/radius", "/v1/spaces/nearest", "/v1/spaces/bbox", "/v1/spaces",
            POLYGON_SEARCH, ITEMS, "/v1/tiles/10/550/335.mvt", "/v1/tiles/4/8/5.json"}
# Path segments where an id or a collection name goes, and the map's files.
PATHS = [
    "/v1/spaces/{}", f"{ITEMS}/{{}}", "/ogc/collections/{}/items",
    "/ogc/collections/{}", "/static/{}", "/v1/tiles/{}/0/0.mvt", "/v1/tiles/3/{}/0.mvt",
    "/v1/tiles/3/0/{}.mvt", "/v1/tiles/3/0/0.{}",
]
SEGMENTS = ["%00", "%00'", "%FF", "%ED%A0%80", "%C0%AF", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..",
            "a%0Ab", "'%20OR%20'1'='1", "x" * 3000, "%E2%80%AE", "map.js%00.html", HUGE, "-1"]


def b64(raw: bytes) -> str:
    """base64url without padding, as cursors are written."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED_CURSORS = [
    b64(json.dumps(doc).encode())
    for doc in ({"v": "x", "q": "y", "a": [1e308, "z"]}, {"v": None, "q": None, "a": None},
                {"a": [{"$ne": 1}]}, [1, 2, 3], {"v": "x", "q": "y", "a": ["\u0000"]},
                {"v": "x", "q": "y", "a": [float("nan"), "a"]})
] + ["%00", "!!!", "=" * 50, "eyJ2Ijo" * 400, "e30"]


@dataclass
class Probe:
    """One request of the battery: a method, target, body and headers (the sender adds
    Host, Content-Length and Connection: close), or ``raw`` bytes sent as they are (the
    target then only names them)."""

    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # the status it must get; None: a 2xx, or a 4xx problem
    status: int | None = None
    raw: bytes | None = None
    # the client closes its side once all is sent: the server reads an end of stream
    half_close: bool = False
    # the field a 4xx answer must name in its errors (a parameter, a header, a pointer)
    param: str | None = None
    # text no answer to it may hold, in its head or its body: the keys' secrets
    secrets: tuple[str, ...] = ()


SQUARE = [[13.3, 52.4], [13.5, 52.4], [13.5, 52.6], [13.3, 52.6], [13.3, 52.4]]
POLYGON = json.dumps({"type": "Polygon", "coordinates": [SQUARE]}).encode()
JSON = {"Content-Type": "application/json"}


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BODIES: list[tuple[bytes, str]] = [
    (_deep(100_000), "application/json"),
    (b'{"type": "Polygon", "coordinates": ' + _deep(5000) + b"}", "application/json"),
    (POLYGON, "text/plain"),
    (POLYGON, "application/x-www-form-urlencoded"),
    (POLYGON, "multipart/form-data"),
    (b'{"type": "Polygon", "coordinates": [[[NaN, 1], [2, 2], [3, 1], [NaN, 1]]]}',
     "application/json"),
    (b'{"type": "Polygon", "coordinates": [[[1e400, 1], [2, 2], [3, 1], [1e400, 1]]]}',
     "application/json"),
    (b'{"type": "Polygon", "coordinates": [[["1", "2"], [2, 2], [3, 1], ["1", "2"]]]}',
     "application/json"),
    (b'{"type": "Polygon", "coordinates": [[[true, false], [2, 2], [3, 1], [true, false]]]}',
     "application/json"),
    (b'{"type": "Polygon", "coordinates": "\\u0000"}', "application/json"),
    (b'{"type": "MultiPolygon", "coordinates": [[[]]]}', "application/json"),
    (b'{"type": "Feature", "geometry": {"type": "Feature", "geometry": null}}',
     "application/json"),
    (b"\xff\xfe\x00{", "application/json"),
    (b"", "application/json"),
    (b"null", "application/geo+json"),
    (b'"' + b"a" * 2_000_000 + b'"', "application/json"),
    (json.dumps({"type": "Polygon", "coordinates": [[[i * 1e-4, 0] for i in range(20_000)]
                                                    + [[0, 1], [0, 0]]]}).encode(),
     "application/json"),
]


def _post(body: bytes, status: int | None, query: str = "limit=5") -> Probe:
    return Probe("POST", f"{POLYGON_SEARCH}?{query}", body, dict(JSON), status)


def _nested(depth: int, leaf: str = "1") -> str:
    """JSON objects ``depth`` deep around ``leaf``."""
    return '{"a":' * depth + leaf + "}" * depth


def body_nesting() -> Iterator[Probe]:
    """Polygon bodies nested to the bound (``MAX_JSON_DEPTH`` levels, 200) and beyond it
    (400): a Feature's properties, arrays, objects, both mixed, extra brackets around the
    coordinates, Features inside Features."""
    feature = '{"type": "Feature", "geometry": ' + POLYGON.decode() + ', "properties": %s}'
    for depth in (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH):  # the Feature is the first level
        yield _post((feature % _nested(depth - 1)).encode(), 200)
    ring = json.dumps(SQUARE)
    for depth in (MAX_JSON_DEPTH + 1, 64, 1025, 100_000):
        yield _post((feature % _nested(depth - 1)).encode(), 400)
        yield _post(_deep(depth), 400)
        yield _post(_nested(depth).encode(), 400)
        yield _post(b'[{"a":' * (depth // 2) + b"1" + b"}]" * (depth // 2), 400)
        yield _post(('{"type": "Polygon", "coordinates": ' + "[" * depth + ring
                     + "]" * depth + "}").encode(), 400)
        if depth <= 1025:  # Features inside Features, deeper, are over the body's limit
            yield _post(('{"type": "Feature", "geometry": ' * depth + POLYGON.decode()
                         + "}" * depth).encode(), 400)


def _triangles(n: int, size: float = 0.2, step: float = 0.25) -> list[list[list[float]]]:
    """``n`` small disjoint triangular rings inside the box (0, 0)-(50, 50)."""
    per_row = int(49 / step)
    corners = [(0.5 + step * (i % per_row), 0.5 + step * (i // per_row)) for i in range(n)]
    return [[[x, y], [x + size, y], [x, y + size], [x, y]] for x, y in corners]


def ring_counts() -> Iterator[Probe]:
    """Polygons of a shell and holes, and MultiPolygons of islands, with ``MAX_RINGS``
    rings in all (200) and more (400); rings with too few positions, by the thousand."""
    shell = [[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0], [0.0, 0.0]]
    for rings, status in ((MAX_RINGS, 200), (MAX_RINGS + 1, 400), (4 * MAX_RINGS, 400)):
        polygon = {"type": "Polygon", "coordinates": [shell, *_triangles(rings - 1)]}
        islands = {"type": "MultiPolygon", "coordinates": [[r] for r in _triangles(rings)]}
        for doc in (polygon, islands, {"type": "Feature", "properties": {}, "geometry": polygon}):
            yield _post(json.dumps(doc).encode(), status)
    for ring in ([], [[0, 0]], [[0, 0], [1, 1], [0, 0]]):
        yield _post(json.dumps({"type": "Polygon", "coordinates": [shell] + [ring] * 5000}
                               ).encode(), 400)
        yield _post(json.dumps({"type": "MultiPolygon", "coordinates": [[ring]] * 5000}
                               ).encode(), 400)


def body_values() -> Iterator[Probe]:
    """Numbers beyond every type, NUL and lone surrogates, in each place a body holds a
    value: a coordinate, the type, a Feature's properties and member names."""
    polygon = POLYGON.decode()
    for number in (HUGE, "-" + HUGE, "1e400", "18446744073709551616", "-" + "9" * 5000):
        # the first and the last position, so that the ring still closes
        yield _post(polygon.replace("[13.3, 52.4]", f"[{number}, 52.4]").encode(), 400)
    for text in (r"\u0000", r"\ud800", r"a\udfff", r"\udc00\ud800", "\x00"):
        yield _post(polygon.replace('"Polygon"', f'"Polygon{text}"').encode(), 400)
        yield _post(polygon.replace("13.5", f'"{text}"', 1).encode(), 400)
        for members in (f'{{"{text}": 1}}', f'{{"a": "{text}"}}'):
            yield _post(('{"type": "Feature", "geometry": ' + polygon + ', "properties": '
                         + members + "}").encode(), None)


# -- cursors: every paged endpoint's first page, which has a next one -------------------
PAGED = [
    Probe("GET", "/v1/spaces?limit=2"),
    Probe("GET", f"/v1/spaces/radius?{ORIGIN}&radius_m=50000&limit=2"),
    Probe("GET", "/v1/spaces/bbox?bbox=-10,35,30,60&limit=2"),
    Probe("GET", "/v1/spaces/bbox?bbox=-10,35,30,60&lat=52.5&lon=13.4&limit=2"),
    _post(POLYGON, None, "limit=2"),
    _post(POLYGON, None, "limit=2&lat=52.5&lon=13.4"),
    Probe("GET", f"{ITEMS}?limit=2"),
]
FINGERPRINT = '"0123456789abcdef"'  # of the issued shape, of no query
# JSON that no value of a cursor is: not finite, beyond 64 bits, of another type, text with
# NUL or a lone surrogate, deep
WRONG_JSON = ["NaN", "Infinity", "1e999", HUGE, "-" + HUGE, "true", "null", "[]", "{}",
              '{"$ne": 1}', r'"\u0000"', r'"a\ud800"', r'"\udfff"', "[" * 60 + "]" * 60]


def with_cursor(page: Probe, cursor: str, status: int | None = 400) -> Probe:
    """``page`` continued by ``cursor``."""
    return Probe(page.method, f"{page.url}&cursor={cursor}", page.body, dict(page.headers),
                 status)


def _cursor_docs() -> Iterator[str]:
    """Cursor JSON nested to the JSON bound and far beyond, alone or where the keyset
    goes, and of every wrong type where each of the cursor's values goes."""
    for depth in (MAX_JSON_DEPTH, 1000, 1500):  # 3,000 bytes: within MAX_CURSOR_CHARS
        yield "[" * depth + "]" * depth
        yield "[" * depth
        yield f'{{"v":"x","q":{FINGERPRINT},"a":' + "[" * depth + "]" * depth + "}"
    yield _nested(500)
    yield f'{{"v":"x","q":{FINGERPRINT},"a":["x",{_nested(400)}]}}'
    for wrong in WRONG_JSON:
        yield f'{{"v":{wrong},"q":{FINGERPRINT},"a":["x"]}}'
        yield f'{{"v":"x","q":{wrong},"a":["x"]}}'
        yield f'{{"v":"x","q":{FINGERPRINT},"a":{wrong}}}'
        yield f'{{"v":"x","q":{FINGERPRINT},"a":[{wrong}]}}'
        yield f'{{"v":"x","q":{FINGERPRINT},"a":[{wrong},"id"]}}'


def cursor_nesting() -> Iterator[Probe]:
    """Every paged endpoint's first page with each generated cursor (400)."""
    docs = [b64(doc.encode()) for doc in _cursor_docs()]
    for page in PAGED:
        for cursor in docs:
            yield with_cursor(page, cursor)


def forged_from(page: Probe, issued: str) -> Iterator[Probe]:
    """``page`` continued by the cursor it issued (200), then by that cursor with each of
    its values replaced by each wrong JSON value (400)."""
    yield with_cursor(page, issued, 200)
    doc = json.loads(base64.urlsafe_b64decode(issued + "=" * (-len(issued) % 4)))
    parts = {"v": json.dumps(doc["v"]), "q": json.dumps(doc["q"])}
    keyset = [json.dumps(v) for v in doc["a"]]
    for wrong in WRONG_JSON:
        for name in parts:
            text = dict(parts, **{name: wrong})
            yield with_cursor(page, b64(
                f'{{"v":{text["v"]},"q":{text["q"]},"a":[{",".join(keyset)}]}}'.encode()))
        for at in range(len(keyset)):
            members = ",".join([*keyset[:at], wrong, *keyset[at + 1:]])
            yield with_cursor(page, b64(
                f'{{"v":{parts["v"]},"q":{parts["q"]},"a":[{members}]}}'.encode()))


# -- CQL2 filters of the OGC items -----------------------------------------------------------

AS_IS = "()=,'"  # characters of a filter sent unescaped (none needs escaping)


def _filtered(text: str, status: int | None, language: str = "") -> Probe:
    """The items filtered by ``text``, its brackets, quotes, commas and ``=`` sent as they
    are so that a long filter fits the request line."""
    lang = f"&filter-lang={language}" if language else ""
    return Probe("GET", f"{ITEMS}?limit=2{lang}&filter={quote(text, safe=AS_IS)}",
                 status=status)


def cql2_filters() -> Iterator[Probe]:
    """Brackets nested to ``MAX_FILTER_DEPTH`` (200) and beyond, prefix operators (NOT,
    minus) in runs to ``MAX_PREFIX_RUN`` and beyond, filters that parse but mean nothing
    the API maps, text past ``MAX_FILTER_CHARS``, CQL2 JSON (which the parser reads too)
    nested deep, NUL and lone surrogates in a filter's text; each within the request
    line."""
    supported = "country='DE'"
    yield _filtered("(" * MAX_FILTER_DEPTH + supported + ")" * MAX_FILTER_DEPTH, 200)
    for run in range(1, MAX_PREFIX_RUN + 1):
        yield _filtered("capacity>=" + "-" * run + "5", 200)
    for depth in (MAX_FILTER_DEPTH + 1, 100, 600):
        for wrap in ("(", "NOT(", "-(", "f(", "CASEI("):
            yield _filtered("capacity>=" + wrap * depth + "1" + ")" * depth, 400)
        yield _filtered("(" * depth + supported, 400)
        yield _filtered("[" * depth + "]" * depth, 400)
    for run in (MAX_PREFIX_RUN + 1, 64, 600):
        for prefix in ("-", "+", "- ", "NOT ", "-(", "NOT -"):
            yield _filtered("capacity>=1 AND " + prefix * run + supported, 400)
    for text in ("1 OR 1=1", "capacity>=1e999", "country IN ('ZZZZZ')", "capacity>=" + HUGE,
                 "capacity>=-" + HUGE, "'" * 4000, "(" * 4000, ")" * 4000,
                 "city='" + "x" * MAX_FILTER_CHARS + "'"):
        yield _filtered(text, 400)
    for text in ("1=1", "TRUE", "country='DE' OR 1=1", "city='x' AND city='y'"):
        yield _filtered(text, 200)  # Basic CQL2
    yield _filtered("country IN (" + ",".join(["'DE'"] * 800) + ")", None)
    tree = '{"op":"=","args":[{"property":"%s"},%s]}'
    for depth in (1, 40, 120):
        deep = '{"op":"not","args":[' * depth + tree % ("country", '"DE"') + "]}" * depth
        for language in ("cql2-json", "", "cql2-text"):
            yield _filtered(deep, 400 if depth > 1 or language else None, language)
    for value in (r'"\u0000"', r'"\ud800"', r'"a\udfff"', "1e999", HUGE):
        yield _filtered(tree % ("city", value), 400)
    for value in ("%00", "%ED%A0%80", "a%ED%BF%BF", "%C0%AF", "%0D%0A"):
        for template in ("city='{}'", "country IN ('DE','{}')", "A_CONTAINS(amenities,('{}'))"):
            yield Probe("GET", f"{ITEMS}?filter=" + quote(template, safe=AS_IS + "{}")
                        .format(value), status=400)


def generated() -> Iterator[Probe]:
    """The cases generated around each parser's bounds, each with the status it must get
    where that is known."""
    yield from body_nesting()
    yield from ring_counts()
    yield from body_values()
    yield from cursor_nesting()
    yield from cql2_filters()


def varied() -> Iterator[tuple[str, str, str]]:
    """(path, base query, name) of every query parameter the battery varies."""
    for path, (base, names) in ENDPOINTS.items():
        for name in names + (FILTERS if path in FILTERED else []):
            yield path, base, name


def _query(path: str, query: str) -> Probe:
    """``path`` asked with ``query`` (the polygon search posting a valid polygon)."""
    if path == POLYGON_SEARCH:
        return Probe("POST", f"{path}?{query}", POLYGON, dict(JSON))
    return Probe("GET", f"{path}?{query}")


def battery() -> Iterator[Probe]:
    """Every hostile request of the battery that needs nothing from the server first
    (several thousand)."""
    for path, base, name in varied():
        for value in VALUES:
            yield _query(path, "&".join(p for p in (base, f"{name}={value}") if p))
        # the parameter repeated, and an unknown one holding NUL in its name
        yield _query(path, f"{base}&{name}=1&{name}=2")
        yield _query(path, f"{base}&{name}%00=1")
        if name == "cursor":
            for cursor in FORGED_CURSORS:
                yield _query(path, f"{base}&cursor={cursor}")
    for template in PATHS:
        for segment in SEGMENTS:
            yield Probe("GET", template.format(segment))
    for body, kind in BODIES:
        yield Probe("POST", f"{POLYGON_SEARCH}?limit=5", body, {"Content-Type": kind})
    for path in ("/v1/spaces/radius", ITEMS, "/"):
        yield Probe("DELETE", path)
        yield Probe("PUT", path, b"{}", dict(JSON))
    yield from generated()


LEAKS = ("Traceback", "psycopg", "sqlalchemy", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM",
         "change_counter", "api_keys", "File \"", "Error:", "postgis", "ST_")
EVIL = "evil.example"  # the host of every forged Host header; no answer may name it
_LINK = re.compile(r'"(?:href|url|\$id)"\s*:\s*"(https?://[^"]*)"')


def problems_with(status: int, content_type: str, text: str, sent: str = "") -> list[str]:
    """What is wrong with one response to a hostile request (empty: nothing).

    ``sent`` is the request as text: a word it holds itself may be echoed back in a
    message naming the bad value; that is not a leak."""
    found = []
    if status >= 500:
        found.append(f"status {status}")
    if status >= 400:
        if not content_type.startswith("application/problem+json"):
            found.append(f"content type {content_type!r}")
        else:
            body = json.loads(text)
            missing = {"type", "title", "status", "detail", "errors"} - set(body)
            if missing or body["status"] != status:
                found.append(f"not a problem document: {text[:200]}")
        found += [f"leaks {word!r}" for word in LEAKS if word in text and word not in sent]
    return found


def _named(text: str) -> set[object]:
    """The fields a problem document's errors name (none when it is no problem)."""
    try:
        errors = json.loads(text).get("errors")
    except (ValueError, AttributeError):
        return set()
    return {e.get("param") for e in errors if isinstance(e, dict)} if isinstance(
        errors, list) else set()


def judge(probe: Probe, status: int, content_type: str, head: str, text: str,
          origin: str) -> list[str]:
    """What is wrong with the answer (status, head, body text) to ``probe``, sent to a
    server reached at ``origin`` (``http://host:port``, the trusted host): the faults of
    :func:`problems_with`, a status other than the probe's own, a 1xx or an unasked 3xx,
    a 4xx that does not name the probe's field, one of its secrets anywhere in the
    answer, the forged host echoed, an absolute link or redirect that leaves ``origin``."""
    found = problems_with(status, content_type, text, unquote(probe.url))
    if probe.param is not None and status >= 400 and probe.param not in _named(text):
        found.append(f"does not name {probe.param!r}")
    found += ["holds a secret" for secret in probe.secrets if secret in head or secret in text]
    if probe.status is not None and status != probe.status:
        found.append(f"status {status}, not {probe.status}")
    elif probe.status is None and (status < 200 or 300 <= status < 400):
        found.append(f"status {status}")
    if EVIL in head or EVIL in text:
        found.append(f"echoes {EVIL}")
    links = _LINK.findall(text) + re.findall(r"(?im)^location:\s*(https?://\S*)", head)
    found += [f"links to {link[:80]}" for link in links if not link.startswith(origin + "/")]
    return found
