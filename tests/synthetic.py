"""Synthetic spaces that stress geometry: the antimeridian, the poles, exact ties."""

from __future__ import annotations

import random

import geopandas as gpd
import numpy as np
import pandas as pd

from geosearch.geo import WGS84, latlng_cells
from geosearch.model import Amenity
from geosearch.reference import market_cities

AMENITIES = [a.value for a in Amenity]


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
    frame = pd.DataFrame(rows)
    frame["capacity"] = frame["capacity"].astype("Int64")
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                            crs="EPSG:4326")


def city_scatter(n: int, seed: int = 1, h3_cells: bool = False) -> gpd.GeoDataFrame:
    """``n`` active spaces scattered around the market cities (weighted by population,
    uniform within each city's radius): the shape of a grown network, built column-wise
    (a million in seconds; ``h3_cells`` adds the H3 columns, which takes longer)."""
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
    frame = pd.DataFrame({
        "id": [f"m{i:07d}" for i in range(n)], "name": "Bench space", "address": "1 Main St",
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
