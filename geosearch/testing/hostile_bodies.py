"""The bodies of the write routes' hostile battery (:mod:`geosearch.testing.hostile_writes`):
a space that any write takes (:func:`feature`, :data:`VALID_PATCH`), and :func:`bodies`,
that space spoilt in one place each, with the status its write must get and the field
that answer must name: a property or a Feature member of a wrong type or past a bound,
unknown, derived or server-owned; values no strict JSON reading takes (numbers beyond a
double, lone surrogates, raw control characters); bodies nested deep, over the size
limit, not UTF-8, not one JSON document. Each body is its JSON text, spliced where needed
(a lone surrogate or a 400-digit number has no Python value to dump).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from geosearch.api.writes import MAX_SPACE_BODY_BYTES, MAX_SPACE_CONTAINERS, MAX_SPACE_DEPTH
from geosearch.livespace import DERIVED, MAX_ID_CHARS, SERVER_OWNED, pointer
from geosearch.testing.hostile import HUGE

BERLIN = [13.3777, 52.5163]
NAME = "Hostile Haus"
PROPERTIES = {"name": NAME, "address": "Unter den Linden 1", "city": "Berlin",
              "country": "DE", "amenities": ["wifi"], "capacity": 10, "price_day": 20.0,
              "currency": "EUR"}
VALID_PATCH = {"properties": {"capacity": 11, "amenities": ["wifi", "coffee"]}}


def feature(name: str = NAME) -> dict:
    """A space that can be created (where no active space of that name is near) or
    written over any other: a Point in Berlin and every writable property."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": BERLIN},
            "properties": {**PROPERTIES, "name": name}}


_SLOT = "@hostile@"


def _spliced(doc: object, raw: str) -> bytes:
    """``doc`` as JSON text with the value ``_SLOT`` replaced by the JSON text ``raw``."""
    return json.dumps(doc).replace(json.dumps(_SLOT), raw).encode("utf-8", "surrogatepass")


def _depth(levels: int) -> str:
    """An array nested ``levels`` deep."""
    return "[" * levels + "1" + "]" * levels


# (property, raw JSON value, where the answer points under /properties): values a write
# refuses with a 422 by the property's type or bounds, or by the ingest's stages.
WRONG_VALUES: list[tuple[str, str, str]] = [
    *[(name, raw, name) for name, raws in (
        ("name", ["7", '["x"]', "{}", "true", "null", '"  Hostile  Haus "', '"' + "n" * 201 + '"',
                  r'"\u0000"', r'"a\u0000b"', r'"tab\there"', r'"\u0085"',
                  _depth(MAX_SPACE_DEPTH - 2)]),  # the Feature and properties: 8 levels
        ("address", ["5", '"' + "a" * 301 + '"', r'"\u001b[31m"']),
        ("city", ["[]", '"' + "c" * 1000 + '"']),
        ("postcode", ["5", '""', '"   "']),
        ("country", ["7", '"de"', '"DEU"', '"ZZ"', '""', r'"D\u0000"']),
        ("currency", ["5", '"eur"', '"EURO"']),
        ("capacity", ["1.5", "-1", '"10"', "true", "1000001", "18446744073709551616", "1e300",
                      "-0.5"]),
        ("price_day", ['"20"', "-1", "1e10", "true", "[]"]),
        ("amenities", ['"wifi"', "{}", "7"]),
    ) for raw in raws],
    ("amenities", '["wifi", "wifi"]', "amenities/1"), ("amenities", "[1]", "amenities/0"),
    ("amenities", '["teleporter"]', "amenities/0"), ("amenities", r'["\u0000"]', "amenities/0"),
    ("amenities", '["' + "w" * 5000 + '"]', "amenities/0"),
]
# Values no JSON reading of a body takes (400 naming the body): numbers beyond a double,
# lone surrogates, raw control characters, nesting past the bound, too many containers.
UNREADABLE = [HUGE, "-" + HUGE, "1e400", "-1e400", "1" + "0" * 400 + ".5", "NaN", "Infinity",
              r'"\ud800"', r'"a\udfff"', r'"\udc00\ud800"', '"a\x00b"', '"tab\tin"',
              _depth(MAX_SPACE_DEPTH - 1), "[" * 30_000]
# Members no space has, in properties and in a Feature; long, NUL, JSON Pointer syntax.
UNKNOWN = ["foo", "Name", "id ", "x" * 5000, "\x00", "a/b", "~1", "", "\u202e"]
# (member of a Feature, raw JSON value, the field named): a geometry, properties and an
# id that are no such thing, members a Feature of a space has not.
MEMBERS: list[tuple[str, str, str]] = [
    *[("geometry", raw, "/geometry") for raw in (
        "5", '"POINT(13 52)"', "[]", '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], '
        '[1, 1], [0, 0]]]}', '{"type": "Point", "coordinates": [13, 52], "crs": {}}',
        '{"type": "Feature", "geometry": null}', '{"type": null, "coordinates": [13, 52]}')],
    *[("geometry", f'{{"type": "Point", "coordinates": {raw}}}', "/geometry/coordinates")
      for raw in ("[1]", "[13, 52, 0]", "[200, 0]", "[0, -91]", '["13", "52"]', "[true, false]",
                  "[null, 1]", "[[13, 52]]", '"13,52"')],
    *[("properties", raw, "/properties") for raw in ("[]", "5", '"x"', "null")],
    *[("id", raw, "/id") for raw in ("5", '"a/b"', '"radius"', '"x\\u0000"', '"\\n"', '""',
                                     '"' + "i" * (MAX_ID_CHARS + 1) + '"', "[]", "true")],
    *[(name, "1", pointer("", name)) for name in ("bbox", "links", "crs", *UNKNOWN)],
]


def property_bodies(patch: bool) -> Iterator[tuple[bytes, int, str]]:
    """(body, status, named field) of a space whose one property is wrong: of a wrong
    type or bound, unreadable, unknown, derived, server-owned. As a merge patch
    (``patch``) it is the property alone; its pointers are into the patched document,
    which has the body's shape."""
    def spliced(name: str, raw: str) -> bytes:
        if patch:
            return _spliced({"properties": {name: _SLOT}}, raw)
        doc = feature()
        doc["properties"][name] = _SLOT
        return _spliced(doc, raw)

    for name, raw, where in WRONG_VALUES:
        yield spliced(name, raw), 422, f"/properties/{where}"
    for raw in UNREADABLE:
        yield spliced("capacity", raw), 400, "body"
    for name in (*DERIVED, *SERVER_OWNED, *UNKNOWN):
        yield spliced(name, '"x"'), 422, pointer("/properties", name)


def member_bodies(method: str) -> Iterator[tuple[bytes, int, str]]:
    """(body, status, named field) of a Feature whose one member is wrong (a replace or
    a patch: its id another), of one that is no Feature, and of bodies no object."""
    patch = method == "PATCH"
    changed_id = [("id", '"another-id"', "/id")] if method != "POST" else []
    for name, raw, where in MEMBERS + changed_id:
        doc = {name: _SLOT} if patch else {**feature(), name: _SLOT}
        yield _spliced(doc, raw), 422, where
    if not patch:
        yield json.dumps({**feature(), "type": "FeatureCollection"}).encode(), 422, "/type"
        yield json.dumps(PROPERTIES | {"h3_r9": "x"}).encode(), 422, "/h3_r9"
    for raw in ("null", "5", '"Hostile Haus"', "[]", "true", '[{"name": "x"}]'):
        yield raw.encode(), 422, ""


def structure_bodies() -> Iterator[tuple[bytes, int, str]]:
    """(body, status, named field) of bodies past the reading's bounds: nested deep, more
    containers than allowed, over the size limit (and one exactly at it), not UTF-8, not
    one JSON document. A whole Feature is a merge patch too."""
    doc = feature()
    doc["properties"]["name"] = _SLOT
    fill = MAX_SPACE_BODY_BYTES - len(_spliced(doc, "")) - 2  # the quotes
    yield _spliced(doc, json.dumps("n" * fill)), 422, "/properties/name"
    yield _spliced(doc, json.dumps("n" * (fill + 1))), 413, "body"
    yield _spliced(doc, json.dumps("n" * 2_000_000)), 413, "body"
    for text in (_depth(MAX_SPACE_DEPTH + 1), "[" * 20_000 + "]" * 20_000,
                 '{"a":' * (MAX_SPACE_DEPTH + 1) + "1" + "}" * (MAX_SPACE_DEPTH + 1),
                 "[" + "[]," * MAX_SPACE_CONTAINERS + "[]]", "{" * 5000,
                 '{"type": "Feature", "properties": ' + _depth(MAX_SPACE_DEPTH) + "}"):
        yield text.encode(), 400, "body"
    whole = json.dumps(feature())
    for data in (b"", b"   ", whole.encode("utf-16"), b"\xef\xbb\xbf" + whole.encode(),
                 whole.replace("Haus", "H\xe4us").encode("latin-1"),
                 whole.replace("Haus", "H\ud800us").encode("utf-8", "surrogatepass"),
                 whole.encode() + b" x", (whole + whole).encode(), whole[:-1].encode(),
                 b"\x00" + whole.encode(), whole.replace(": ", ": /**/ ").encode(),
                 whole.replace('"capacity"', '"\\ud800"').encode(),
                 whole.replace('"Feature"', "'Feature'").encode()):
        yield data, 400, "body"


def bodies(method: str) -> Iterator[tuple[bytes, int, str]]:
    """Every hostile body of a write of ``method`` (POST, PUT or PATCH)."""
    yield from property_bodies(method == "PATCH")
    yield from member_bodies(method)
    yield from structure_bodies()
