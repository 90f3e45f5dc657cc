"""Synthetic spaces that stress geometry: the antimeridian, the poles, exact ties."""

from __future__ import annotations

import json
import random

import geopandas as gpd
import numpy as np
import pandas as pd

from geosearch.geo import WGS84, latlng_cells
from geosearch.model import Amenity
from geosearch.reference import REFERENCE_DIR, market_cities

AMENITIES = [a.value for a in Amenity]


def _spaces(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """Rows of spaces as the pipeline's frame: nullable integer capacity, point geometry."""
    frame["capacity"] = frame["capacity"].astype("Int64")
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                            crs="EPSG:4326")


def synthetic_frame(n: int = 1500, seed: int = 7) -> gpd.GeoDataFrame:
    """``n`` spaces: a global scatter, clusters at ±180° and near both poles, and groups
    sharing one position exactly (ties in distance), with random attributes."""
    rng = random.Random(seed)
    points: list[tuple[float, float]] = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            points.append((rng.uniform(-89.9, 89.9), rng.uniform(-180, 180)))
        elif kind == 1:  # both sides of the antimeridian
            points.append((rng.uniform(-20, 70), rng.choice([-1, 1]) * rng.uniform(179.0, 180)))
        elif kind == 2:  # high latitudes, both hemispheres
            points.append((rng.choice([-1, 1]) * rng.uniform(84, 89.999), rng.uniform(-180, 180)))
        elif kind == 3:  # a dense city
            points.append((52.52 + rng.gauss(0, 0.05), 13.40 + rng.gauss(0, 0.08)))
        elif kind == 4 and points:  # an exact copy of an earlier position: a tie
            points.append(rng.choice(points))
        else:
            points.append((rng.uniform(-60, 75), rng.uniform(-180, 180)))
    rows = []
    for i, (lat, lon) in enumerate(points):
        cells = latlng_cells(lat, lon)
        rows.append({
            "id": f"syn-{i:05d}", "name": f"Space {i}", "address": f"{i} Test Street",
            "city": rng.choice(["Berlin", "Suva", "Longyearbyen", "McMurdo", "berlin "]),
            "postcode": None, "country": rng.choice(["DE", "FJ", "NO", "AQ", "US"]),
            "lat": lat, "lon": lon,
            "amenities": sorted(rng.sample(AMENITIES, rng.randint(0, 8)),
                                key=AMENITIES.index),
            "capacity": rng.choice([None, 5, 10, 20, 50, 100]),
            "price_day": 10.0, "currency": "EUR",
            "status": "inactive" if rng.random() < 0.05 else "active",
            "h3_r7": cells[7], "h3_r8": cells[8], "h3_r9": cells[9],
            "geocode_precision": "input", "feed_row": i + 1,
        })
    return _spaces(pd.DataFrame(rows))


def city_scatter(n: int, seed: int = 1, h3_cells: bool = False) -> gpd.GeoDataFrame:
    """``n`` active spaces scattered around the market cities (weighted by population,
    uniform within each city's radius): the shape of a grown network, built column-wise
    with numpy, never row by row (but for ``h3_cells``, which adds the H3 columns one
    point at a time)."""
    rng = np.random.default_rng(seed)
    cities = market_cities()
    cities = cities[cities["population"] >= 50_000]
    weights = cities["population"].to_numpy(float)
    c = cities.iloc[rng.choice(len(cities), size=n, p=weights / weights.sum())]
    dist = c["radius_m"].to_numpy() * np.sqrt(rng.random(n))
    lon, lat, _ = WGS84.fwd(c["longitude"].to_numpy(), c["latitude"].to_numpy(),
                            rng.uniform(0, 360, n), dist)
    lon = ((np.asarray(lon) + 180) % 360) - 180
    masks = rng.random((n, len(AMENITIES))) < np.linspace(0.9, 0.05, len(AMENITIES))
    names = np.array(AMENITIES)
    amenities = [names[row].tolist() for row in masks]
    # "<brand> <city>" (real coworking brands) or an independent "<city> Coworking <n>"
    brands = np.array([*BRANDS, ""])[rng.integers(0, len(BRANDS) + 1, n)]
    city = c["name"].to_numpy()
    number = rng.integers(1, 500, n).astype(str)
    title = np.where(brands == "", np.char.add(np.char.add(city.astype(str), " Coworking "),
                                               number),
                     np.char.add(np.char.add(brands, " "), city.astype(str)))
    frame = pd.DataFrame({
        "id": [f"m{i:07d}" for i in range(n)], "name": title,
        "address": np.char.add(number, " Main Street"),
        "city": c["name"].to_numpy(), "postcode": None, "country": c["country_code"].to_numpy(),
        "lat": np.round(lat, 6), "lon": np.round(lon, 6), "amenities": amenities,
        "capacity": pd.array(rng.integers(5, 300, n), dtype="Int64"),
        "price_day": pd.array(np.round(rng.uniform(5, 80, n), 2), dtype="Float64"),
        "currency": "USD", "status": "active", "h3_r7": "", "h3_r8": "", "h3_r9": "",
        "geocode_precision": "input", "feed_row": np.arange(1, n + 1),
    })
    if h3_cells:
        import h3

        for r in (7, 8, 9):
            frame[f"h3_r{r}"] = [h3.latlng_to_cell(a, b, r) for a, b in
                                 zip(frame["lat"], frame["lon"], strict=True)]
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                            crs="EPSG:4326")


BRANDS = [item["displayName"] for item in json.loads(
    (REFERENCE_DIR / "coworking_brands_nsi.json").read_text())["items"]]
# Words that fold in every way text search must handle: accents, case, ligatures,
# compatibility forms, scripts without case or with special case rules, digits, joiners.
NAME_WORDS = ["Café", "CAFE", "cafeteria", "München", "MUNCH", "Straße", "STRASSE", "Œuvre",
              "ﬁnance", "Ⅻ", "東京", "Москва", "МОСКВА", "Αθήνα", "ΆΘΗΝΑ", "İstanbul",
              "naïve", "O'Brien", "work-club", "Work_Club", "hub42", "42", "½", "Ｗｏｒｋ",
              "Ångström", "São", "Kraków", "Łódź", "Ørsted", "ǅemal", "Regus", "Spaces",
              "WeWork", "Impact", "Hub", "Club", "coworking", "Coworking", "Co.Work",
              "x", "Z", "日本橋", "Ελληνικά", "ÉCOLE", "école", "ecole"]
STREETS = ["Rue de la Paix", "Hauptstraße", "Nørrebrogade", "Calle Mayor", "Ulitsa Arbat",
           "Market St.", "Via Roma", "Shibuya 2-chōme"]


def text_frame(n: int = 800, seed: int = 11) -> gpd.GeoDataFrame:
    """``n`` spaces with generated names, addresses and cities mixing accents, scripts,
    digits and punctuation, around three cities (so that geographic searches find many)."""
    rng = random.Random(seed)
    centres = [(52.52, 13.40), (48.86, 2.35), (35.68, 139.76)]
    rows = []
    for i in range(n):
        lat, lon = rng.choice(centres)
        lat, lon = lat + rng.gauss(0, 0.04), lon + rng.gauss(0, 0.06)
        name = " ".join(rng.sample(NAME_WORDS, rng.randint(1, 4)))
        if rng.random() < 0.3:
            name += rng.choice([" #", " - ", " & ", ", "]) + str(rng.randint(1, 300))
        cells = latlng_cells(lat, lon)
        rows.append({
            "id": f"txt-{i:04d}", "name": name,
            "address": f"{rng.randint(1, 200)} {rng.choice(STREETS)}",
            "city": rng.choice(["Berlin", "Paris", "Tōkyō", "Zürich", "München"]),
            "postcode": None, "country": rng.choice(["DE", "FR", "JP"]), "lat": lat,
            "lon": lon, "amenities": sorted(rng.sample(AMENITIES, rng.randint(0, 5)),
                                            key=AMENITIES.index),
            "capacity": rng.choice([None, 10, 40]), "price_day": None, "currency": None,
            "status": "inactive" if rng.random() < 0.05 else "active",
            "h3_r7": cells[7], "h3_r8": cells[8], "h3_r9": cells[9],
            "geocode_precision": "input", "feed_row": i + 1,
        })
    return _spaces(pd.DataFrame(rows))
