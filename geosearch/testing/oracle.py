"""The brute-force reference: every space, exact geodesic distance, no index.

Distances come from geographiclib (an implementation independent of pyproj's C port);
containment from shapely's vectorised ``covers`` over every point, without a tree.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import shapely
from geographiclib.geodesic import Geodesic

from geosearch.model import Filters


def distances(frame: pd.DataFrame, lat: float, lon: float) -> np.ndarray:
    """Geodesic metres from (lat, lon) to every row."""
    inverse = Geodesic.WGS84.Inverse
    return np.array([inverse(lat, lon, a, b, Geodesic.DISTANCE)["s12"]
                     for a, b in zip(frame["lat"], frame["lon"], strict=True)])


def passes(frame: pd.DataFrame, f: Filters) -> np.ndarray:
    """Which rows pass the filters, row by row in plain Python."""
    need_all = {a.value for a in f.all_amenities}
    need_any = {a.value for a in f.any_amenities}
    out = []
    for row in frame.itertuples():
        has = set(row.amenities)
        ok = need_all <= has and (not need_any or bool(need_any & has))
        ok = ok and (not f.countries or row.country in f.countries)
        ok = ok and (f.city_key is None or row.city.strip().casefold() == f.city_key)
        cap = row.capacity
        ok = ok and (f.min_capacity is None or (not pd.isna(cap) and cap >= f.min_capacity))
        ok = ok and text_match(space_words(row.name, row.address, row.city), f.text)
        out.append(ok)
    return np.array(out, dtype=bool)


def folded_words(text: object) -> set[str]:
    """Words as the text search defines them, written out here independently: NFKD, each
    combining mark dropped, case folded, then maximal runs of \\w."""
    if not isinstance(text, str):
        return set()
    plain = "".join(c for c in unicodedata.normalize("NFKD", text)
                    if not unicodedata.combining(c))
    return set(re.findall(r"\w+", plain.casefold()))


def space_words(*fields: object) -> set[str]:
    """The words of a space's name, address and city."""
    return set().union(*(folded_words(f) for f in fields))


def text_match(words: set[str], terms) -> bool:
    """Every term is a prefix of one of the words."""
    return all(any(w.startswith(t) for w in words) for t in terms)


def radius(frame, lat, lon, radius_m, f) -> list[tuple[str, float]]:
    """(id, distance) of every match, by (distance, id)."""
    d = distances(frame, lat, lon)
    ok = passes(frame, f) & (d <= radius_m)
    return sorted(zip(frame["id"][ok], d[ok], strict=True), key=lambda t: (t[1], t[0]))


def nearest(frame, lat, lon, k, max_d, f) -> list[tuple[str, float]]:
    """The k nearest matches."""
    d = distances(frame, lat, lon)
    ok = passes(frame, f)
    if max_d is not None:
        ok &= d <= max_d
    return sorted(zip(frame["id"][ok], d[ok], strict=True), key=lambda t: (t[1], t[0]))[:k]


def area(frame, geom, f, origin=None) -> list[tuple[str, float | None]]:
    """Matches covered by ``geom``: by id, or by (distance, id) from ``origin``."""
    points = shapely.points(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    ok = shapely.covers(geom, points) & passes(frame, f)
    ids = list(frame["id"][ok])
    if origin is None:
        return [(i, None) for i in sorted(ids)]
    d = distances(frame[ok], origin[0], origin[1])
    return sorted(zip(ids, d, strict=True), key=lambda t: (t[1], t[0]))
