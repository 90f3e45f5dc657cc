"""The hostile battery of the write routes: ``POST /v1/spaces``, ``PUT``, ``PATCH`` and
``DELETE /v1/spaces/{id}``, the same at ``/ogc/collections/spaces/items`` (OGC API
Features Part 4), and the change feed ``GET /v1/changes``.

Every probe is one fault away from a request that works: it carries a valid key with the
scopes write and changes, a valid body, the space's current ETag, a valid feed query,
and has one thing made hostile. Bodies (:mod:`geosearch.testing.hostile_bodies`): nested
deep, huge, of wrong types, NUL, lone surrogates, 400-digit numbers, unknown, derived and
server-owned fields; another media type. ``If-Match``: garbage, stale, huge, many. The
key: none, empty, 10 KB, NUL, not ASCII, another key's prefix, revoked, without the
scope. ``since``, ``limit`` and ``wait``: negative, huge, text. Each probe says the 4xx
it must get and the field the answer must name (``Probe.status``, ``Probe.param``), and
carries every key's secret, which no answer may hold (``Probe.secrets``); they are sent
and judged as the rest of the battery (scripts/hostile_http.py,
:func:`geosearch.testing.hostile.judge`). Whether anything was written is for the caller
to see (the change feed's counter and the spaces table before and after:
tests/test_hostile_writes.py); :func:`unspoiled` gives the requests the probes spoil,
which do write.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from types import MappingProxyType

from geosearch.api.auth import MAX_AUTHORIZATION_CHARS
from geosearch.api.guard import MAX_HEADER_BYTES, MAX_HEADERS_TOTAL_BYTES
from geosearch.api.writes import MAX_IF_MATCH_TAGS, MERGE_PATCH
from geosearch.changes import MAX_LIMIT, MAX_SEQ, MAX_WAIT_S
from geosearch.testing.hostile import HUGE, ITEMS, Probe
from geosearch.testing.hostile_bodies import VALID_PATCH, bodies, feature

V1 = "/v1/spaces"
MOUNTS = (V1, ITEMS)  # where spaces are written: /v1 and the OGC items
FEED = "/v1/changes"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Keys:
    """The secrets of the keys the battery sends: ``valid`` has the scopes write and
    changes; ``changes_only`` and ``write_only`` one scope each; ``revoked`` is revoked."""

    valid: str
    changes_only: str
    write_only: str
    revoked: str

    def all(self) -> tuple[str, ...]:
        """Every secret (what no answer may hold)."""
        return (self.valid, self.changes_only, self.write_only, self.revoked)


@dataclass(frozen=True)
class Target:
    """The active space the item probes write to, and its revision (its ETag)."""

    id: str
    revision: int

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'


@dataclass(frozen=True)
class Route:
    """One write route aimed at the target: its method, path and the body that works
    (None: it takes none; ``media``: the body's Content-Type); ``item``: on one space,
    with ``If-Match``."""

    method: str
    url: str
    body: object = None
    media: str = ""

    @property
    def item(self) -> bool:
        return self.method in ("PUT", "PATCH", "DELETE")

    @property
    def ogc(self) -> bool:
        return self.url.startswith(ITEMS)


def routes(target: Target) -> list[Route]:
    """Every write route of both mounts."""
    found = []
    for mount in MOUNTS:
        one = f"{mount}/{target.id}"
        found += [Route("POST", mount, feature(), JSON_TYPE),
                  Route("PUT", one, feature(), JSON_TYPE),
                  Route("PATCH", one, VALID_PATCH, MERGE_PATCH), Route("DELETE", one)]
    return found


class Battery:
    """Builds probes that spoil one part of a working request (:meth:`probe`)."""

    def __init__(self, keys: Keys, target: Target) -> None:
        self.keys = keys
        self.target = target

    def headers(self, route: Route) -> dict[str, str]:
        """The headers of the request that works."""
        headers = {"Authorization": f"Bearer {self.keys.valid}"}
        if route.media:
            headers["Content-Type"] = route.media
        if route.item:
            headers["If-Match"] = self.target.etag
        return headers

    def probe(self, route: Route, status: int, param: str | None, body: bytes | None = None,
              url: str = "", headers: Mapping[str, str | None] = MappingProxyType({})
              ) -> Probe:
        """``route``'s working request with ``body`` (default: the one that works), ``url``
        and ``headers`` (a value None: the header left out) instead, which must get
        ``status`` naming ``param``."""
        sent = self.headers(route)
        for name, value in headers.items():
            sent.pop(name, None)
            if value is not None:
                sent[name] = value
        if body is None and route.body is not None:
            body = json.dumps(route.body).encode()
        return Probe(route.method, url or route.url, body, sent, status,
                     param=param, secrets=self.keys.all())

    def feed(self, query: str, status: int, param: str | None,
             headers: Mapping[str, str | None] = MappingProxyType({})) -> Probe:
        """``GET /v1/changes?query`` with the valid key (or ``headers``)."""
        return self.probe(Route("GET", f"{FEED}?{query}"), status, param, headers=headers)


def body_probes(battery: Battery, route: Route) -> Iterator[Probe]:
    """Every hostile body to a route that takes one, and the body that works under
    another media type, without one, with a huge one, in another CRS (the OGC items)."""
    for body, status, param in bodies(route.method):
        yield battery.probe(route, status, param, body)
    ogc_missing = 400 if route.ogc else 415
    yield battery.probe(route, ogc_missing, "Content-Type", headers={"Content-Type": None})
    other = JSON_TYPE if route.method == "PATCH" else MERGE_PATCH
    for media in (other, "text/plain", "multipart/form-data; boundary=x",
                  "application/x-www-form-urlencoded", "application/json-patch+json",
                  "application/geo+json+x", "*/*", "m" * 9000, "application/ json"):
        yield battery.probe(route, 415, "Content-Type", headers={"Content-Type": media})
    chunked = json.dumps({**feature(), "padding": "p" * 70_000}).encode()
    yield battery.probe(route, 413, "body", f"{len(chunked):x}\r\n".encode() + chunked
                        + b"\r\n0\r\n\r\n", headers={"Transfer-Encoding": "chunked"})
    if route.ogc:
        for crs in ("EPSG:4326", "<http://www.opengis.net/def/crs/EPSG/0/4326>", "",
                    "<http://www.opengis.net/def/crs/OGC/1.3/CRS84x>", "c" * 2000):
            yield battery.probe(route, 400, "Content-Crs", headers={"Content-Crs": crs})
        yield battery.probe(route, 431, "Content-Crs", headers={"Content-Crs": "c" * 9000})


# -- If-Match ---------------------------------------------------------------------------

def spellings(name: str, count: int) -> list[str]:
    """``count`` spellings of a header's name that differ only in case: each a header
    line of its own, which the server joins into one list (a dict holds them all)."""
    letters = [i for i, c in enumerate(name) if c.isalpha()]
    found = []
    for upper in product((False, True), repeat=len(letters)):
        chars = list(name.lower())
        for i, up in zip(letters, upper, strict=True):
            chars[i] = chars[i].upper() if up else chars[i]
        found.append("".join(chars))
    if count > len(found):
        raise ValueError(f"{name} has only {len(found)} spellings")
    return found[:count]


def if_match_probes(battery: Battery, route: Route) -> Iterator[Probe]:
    """A write to one space without ``If-Match`` (428), with one that is no list of entity
    tags (400), that names no current revision (412), with too many tags or lines (400),
    over the header limits (431)."""
    current, revision = battery.target.etag, battery.target.revision
    yield battery.probe(route, 428, "If-Match", headers={"If-Match": None})
    for garbage in ("garbage", "1", str(revision), '"1', 'W/"', "W/", "**", '"1" "2"',
                    f"*, {current}", ",", '"a b"', '"\xe9"', "'1'", f"{current};",
                    f"<{current}>", f"%22{revision}%22", '\\"1\\"'):
        yield battery.probe(route, 400, "If-Match", headers={"If-Match": garbage})
    for stale in ('"0"', f'"{revision + 1}"', f"W/{current}", '""', '"-1"', '"1e3"', '"abc"',
                  '"' + "9" * 400 + '"', f'"{2**64 + revision}"', '"0x1"', f'"0{revision}"',
                  f'"+{revision}"', f'"{revision}.0"'):
        yield battery.probe(route, 412, "If-Match", headers={"If-Match": stale})
    many = ", ".join([current] * (MAX_IF_MATCH_TAGS + 1))
    yield battery.probe(route, 400, "If-Match", headers={"If-Match": many})
    lines = dict.fromkeys(spellings("If-Match", MAX_IF_MATCH_TAGS + 10), '"0"')
    yield battery.probe(route, 400, "If-Match", headers={"If-Match": None, **lines})
    huge = '"' + "1" * MAX_HEADER_BYTES + '"'
    yield battery.probe(route, 431, "If-Match", headers={"If-Match": huge})
    long_lines = dict.fromkeys(spellings("If-Match", 6), ", ".join(['"0"'] * 1200))
    yield battery.probe(route, 431, "If-Match", headers={"If-Match": None, **long_lines})
    padded = {f"X-Pad-{i}": "p" * (MAX_HEADER_BYTES - 100)
              for i in range(MAX_HEADERS_TOTAL_BYTES // MAX_HEADER_BYTES + 1)}
    yield battery.probe(route, 431, "headers", headers=padded)
    # more header lines than the server reads: refused before the app (no field named)
    lines = dict.fromkeys(spellings("If-Match", 120), current)
    yield battery.probe(route, 431, None, headers={"If-Match": None, **lines, **{
        f"X-Pad-{i}": "x" for i in range(100)}})


# -- keys -------------------------------------------------------------------------------

def authorizations(keys: Keys) -> Iterator[tuple[str | None, int, str | None]]:
    """(Authorization, status, named field) of requests whose key is wrong: none, empty,
    another scheme, over the length limits, NUL, not ASCII, a prefix of a real secret,
    another key's prefix with this key's body, revoked."""
    valid = keys.valid
    yield None, 401, "Authorization"
    for value in ("", "Bearer", "Bearer ", "Bearer    \t", "Bearer Bearer", "bearer",
                  "Basic " + base64.b64encode(f"writer:{valid}".encode()).decode(),
                  f"Token {valid}", f"{valid}", f"Bearer {valid} {valid}",
                  f"Bearer {valid},", f'Bearer "{valid}"', f"Bearer {valid.upper()}",
                  "Bearer " + "A" * MAX_AUTHORIZATION_CHARS, f"Bearer {valid[:-1]}\xe9",
                  "Bearer " + "ключ".encode().decode("latin-1"),
                  f"Bearer {valid[:20]}\xa0{valid[21:]}",
                  f"Bearer {keys.revoked}", f"Bearer {valid}x", f"Bearer {valid[:-1]}",
                  f"Bearer {valid[:4]}", f"Bearer {valid[:12]}", f"Bearer {valid[:13]}",
                  f"Bearer {valid[:13]}{keys.write_only[13:]}",
                  f"Bearer {keys.revoked[:13]}{valid[13:]}",
                  f"Bearer {valid[:13]}" + "A" * (len(valid) - 13)):
        yield value, 401, "Authorization"
    for value in ("Bearer " + "A" * 10_240, f"Bearer {valid}" + "A" * 10_000):
        yield value, 431, "Authorization"
    # a NUL in a header: the server refuses the request before the app reads it
    for value in (f"Bearer {valid[:20]}\x00{valid[20:]}", "Bearer \x00", f"Bearer {valid}\x00"):
        yield value, 400, None


def key_probes(battery: Battery, route: Route) -> Iterator[Probe]:
    """The working write with each wrong key, and with a key without the scope write
    (403)."""
    for value, status, param in authorizations(battery.keys):
        yield battery.probe(route, status, param, headers={"Authorization": value})
    yield battery.probe(route, 403, "Authorization",
                        headers={"Authorization": f"Bearer {battery.keys.changes_only}"})


# -- the change feed ------------------------------------------------------------------------

def feed_probes(battery: Battery) -> Iterator[Probe]:
    """The feed with each wrong key, without the scope changes (403), and each of its
    parameters negative, huge, text, repeated (400 naming it)."""
    for value, status, param in authorizations(battery.keys):
        yield battery.feed("since=0", status, param, {"Authorization": value})
    yield battery.feed("since=0", 403, "Authorization",
                       {"Authorization": f"Bearer {battery.keys.write_only}"})
    beyond = {"since": MAX_SEQ + 1, "limit": MAX_LIMIT + 1, "wait": MAX_WAIT_S + 1}
    for name, high in beyond.items():
        for value in ("-1", "-0.0", str(high), str(2**63), str(2**64), HUGE, "-" + HUGE,
                      "9" * 5000, "1e3", "1.5", "0x10", "1_0", "%D9%A1", "%EF%BC%91", "abc",
                      "", "%20", "%00", "1%00", "%FF", "%ED%A0%80", "NaN", "Infinity",
                      "true", "null", "[]", "1,2", "a" * 3000, "%27%20OR%201=1--",
                      "1;SELECT%20pg_sleep(9)"):
            yield battery.feed(f"{name}={value}", 400, name)
        yield battery.feed(f"{name}=1&{name}=2", 400, name)
    yield battery.feed("limit=0", 400, "limit")
    yield battery.feed("since=0&x%00=1", 400, "x?")


# -- paths ----------------------------------------------------------------------------------

def path_probes(battery: Battery, route: Route) -> Iterator[Probe]:
    """The working write aimed at ids that are no text (400 naming the path) and at ids
    no active space has (404)."""
    base = route.url.rsplit("/", 1)[0] if route.item else route.url
    for segment in ("%00", "%00x", "%FF", "%ED%A0%80", "%C0%AF", "a%0Ab"):
        url = f"{base}/{segment}" if route.item else f"{base}?x={segment}"
        yield battery.probe(route, 400, "path" if route.item else "x", url=url)
    if route.item:
        for segment in ("no-such-space", "x" * 3000, "%E2%80%AE", "'%20OR%20'1'='1", HUGE,
                        f"{battery.target.id}%20", f"{battery.target.id}x"):
            yield battery.probe(route, 404, None, url=f"{base}/{segment}")


def write_battery(keys: Keys, target: Target) -> Iterator[Probe]:
    """Every probe of this module: each write route of both mounts, and the feed."""
    battery = Battery(keys, target)
    for route in routes(target):
        if route.body is not None:
            yield from body_probes(battery, route)
        if route.item:
            yield from if_match_probes(battery, route)
        yield from key_probes(battery, route)
        yield from path_probes(battery, route)
    yield from feed_probes(battery)


def unspoiled(keys: Keys, target: Target) -> list[Probe]:
    """The requests the battery spoils, each on each mount, in an order in which each
    works: two creates; a patch, a replace, a patch, a replace and a close of the target,
    one revision after another; a close (on /v1) of the first space created; a read of
    the feed."""
    battery = Battery(keys, target)
    route = {(r.method, r.ogc): r for r in routes(target)}
    found = []
    for i, ogc in enumerate((False, True)):
        body = {**feature(f"Hostile Haus {i}"), "id": f"hostile-unspoiled-{i}"}
        found.append(battery.probe(route["POST", ogc], 201, None, json.dumps(body).encode()))
    for i, (method, ogc) in enumerate((("PATCH", False), ("PUT", True), ("PATCH", True),
                                       ("PUT", False), ("DELETE", True))):
        found.append(battery.probe(route[method, ogc], 204 if method == "DELETE" else 200,
                                   None, headers={"If-Match": f'"{target.revision + i}"'}))
    found.append(battery.probe(Route("DELETE", f"{V1}/hostile-unspoiled-0"), 204, None,
                               headers={"If-Match": '"1"'}))
    return [*found, battery.feed("since=0", 200, None)]
