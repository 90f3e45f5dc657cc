"""A battery of hostile requests: every endpoint, every parameter and path segment, with
the inputs an attacker or a broken client sends. Used by the tests (in-process, both
backends, and over real sockets) and by scripts/hostile_http.py (over HTTP, against a
running service)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

# Query values: control characters, bad UTF-8, numbers no parser should take, SQL text,
# traversal, very long text, other scripts' digits, JSON where text is expected.
VALUES = [
    "%00", "%00'", "a%01b", "%7F", "%C2%85", "%0D%0AX-Injected:%201", "%C0%AF", "%FF", "%ED%A0%80",
    "99999999999999999999999999999", "-99999999999999999999999999999", "1e309", "-1e309",
    "1e-400", "nan", "NaN", "inf", "-Infinity", "0x10", "1_000", "%D9%A1%D9%A2", "+", "-",
    ".", "1.2.3", "1,2", "", "%20", "'%20OR%201=1--", "1;DROP%20TABLE%20spaces",
    "%27)%20UNION%20SELECT%20version()--", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f",
    "a" * 3000, "9" * 5000, "%5B%5D", "%7B%7D", "null", "true", "wifi,%00", "wifi" + ",wifi" * 500,
]
ORIGIN = "lat=52.52&lon=13.405"
# Every GET endpoint with the parameters it reads, and a valid base query to vary.
ENDPOINTS: dict[str, tuple[str, list[str]]] = {
    "/v1/spaces/radius": (f"{ORIGIN}&radius_m=2000", ["lat", "lon", "radius_m", "limit",
                                                      "cursor"]),
    "/v1/spaces/nearest": (ORIGIN, ["lat", "lon", "k", "max_distance_m"]),
    "/v1/spaces/bbox": ("bbox=13.3,52.4,13.5,52.6", ["bbox", "lat", "lon", "limit", "cursor"]),
    "/v1/spaces": ("", ["limit", "cursor"]),
    "/v1/amenities": ("", ["x"]),
    "/v1/coverage/countries": ("", ["min_population", "walk_m", "res", "amenities"]),
    "/v1/coverage/cities": ("country=LU", ["country", "min_population", "walk_m", "res"]),
    "/v1/coverage/hexes": ("country=LU", ["country", "res", "walk_m"]),
    "/ogc/collections/spaces/items": ("", ["bbox", "limit", "cursor"]),
    "/v1/tiles/10/550/335.mvt": ("", []),
    "/v1/tiles/4/8/5.json": ("", []),
    "/healthz": ("", ["x"]),
    "/readyz": ("", ["x"]),
    "/openapi.json": ("", ["x"]),
}
FILTERS = ["amenities", "amenities_any", "country", "city", "min_capacity"]
FILTERED = {"/v1/spaces/radius", "/v1/spaces/nearest", "/v1/spaces/bbox", "/v1/spaces",
            "/ogc/collections/spaces/items", "/v1/tiles/10/550/335.mvt",
            "/v1/tiles/4/8/5.json"}
# Path segments where an id or a collection name goes, and the map's files.
PATHS = [
    "/v1/spaces/{}", "/ogc/collections/spaces/items/{}", "/ogc/collections/{}/items",
    "/ogc/collections/{}", "/static/{}", "/v1/tiles/{}/0/0.mvt", "/v1/tiles/3/{}/0.mvt",
    "/v1/tiles/3/0/{}.mvt", "/v1/tiles/3/0/0.{}",
]
SEGMENTS = ["%00", "%00'", "%FF", "%C0%AF", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..",
            "a%0Ab", "'%20OR%20'1'='1", "x" * 3000, "%E2%80%AE", "map.js%00.html"]
FORGED_CURSORS = [
    base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    for doc in ({"v": "x", "q": "y", "a": [1e308, "z"]}, {"v": None, "q": None, "a": None},
                {"a": [{"$ne": 1}]}, [1, 2, 3], {"v": "x", "q": "y", "a": ["\u0000"]},
                {"v": "x", "q": "y", "a": [float("nan"), "a"]})
] + ["%00", "!!!", "=" * 50, "eyJ2Ijo" * 400, "e30"]


@dataclass
class Probe:
    """One request of the battery."""

    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


SQUARE = [[13.3, 52.4], [13.5, 52.4], [13.5, 52.6], [13.3, 52.6], [13.3, 52.4]]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BODIES: list[tuple[bytes, str]] = [
    (_deep(100_000), "application/json"),
    (b'{"type": "Polygon", "coordinates": ' + _deep(5000) + b"}", "application/json"),
    (json.dumps({"type": "Polygon", "coordinates": [SQUARE]}).encode(), "text/plain"),
    (json.dumps({"type": "Polygon", "coordinates": [SQUARE]}).encode(),
     "application/x-www-form-urlencoded"),
    (json.dumps({"type": "Polygon", "coordinates": [SQUARE]}).encode(), "multipart/form-data"),
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


def battery() -> Iterator[Probe]:
    """Every hostile request of the battery (several hundred)."""
    for path, (base, names) in ENDPOINTS.items():
        names = names + (FILTERS if path in FILTERED else [])
        for name in names:
            for value in VALUES:
                query = "&".join(p for p in (base, f"{name}={value}") if p)
                yield Probe("GET", f"{path}?{query}")
            # the parameter repeated, and an unknown one holding NUL in its name
            yield Probe("GET", f"{path}?{base}&{name}=1&{name}=2")
            yield Probe("GET", f"{path}?{base}&{name}%00=1")
        for cursor in FORGED_CURSORS if "cursor" in names else []:
            yield Probe("GET", f"{path}?{base}&cursor={cursor}")
    for template in PATHS:
        for segment in SEGMENTS:
            yield Probe("GET", template.format(segment))
    for body, kind in BODIES:
        yield Probe("POST", "/v1/spaces/polygon?limit=5", body, {"Content-Type": kind})
    for path in ("/v1/spaces/radius", "/ogc/collections/spaces/items", "/"):
        yield Probe("DELETE", path)
        yield Probe("PUT", path, b"{}", {"Content-Type": "application/json"})


LEAKS = ("Traceback", "psycopg", "sqlalchemy", "SELECT ", "File \"", "Error:",
         "postgis", "ST_")


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
