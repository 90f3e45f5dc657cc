"""Curate the market city list once from the GeoNames extract.

GeoNames lists boroughs and districts (Brooklyn, Hong Kong districts, Singapore new
towns, Dubai districts) as cities of their own. Going down each country by population, a
place whose centre lies inside the extent disk of a larger place already kept is merged
into it (within 1.5 of its radii): its population is added to the larger city and it is dropped.

Writes geosearch/data/reference/market_cities.csv. Run: python scripts/curate_cities.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geosearch.geo import geodesic_m
from geosearch.reference import REFERENCE_DIR, city_radius_m

MERGE_FACTOR = 1.5  # a place within 1.5 extent radii of a larger city is one of its districts


def curate(raw: pd.DataFrame) -> pd.DataFrame:
    """Merge districts into the city whose extent holds them; returns the kept cities."""
    kept_frames = []
    for _, group in raw.groupby("country_code", sort=True):
        group = group.sort_values(["population", "geonameid"], ascending=[False, True])
        lats, lons, pops, radii, rows = [], [], [], [], []
        for row in group.itertuples(index=False):
            if lats:
                d = geodesic_m(row.latitude, row.longitude, np.array(lats), np.array(lons))
                inside = np.nonzero(d <= MERGE_FACTOR * np.array(radii))[0]
                if inside.size:
                    pops[int(inside[0])] += row.population
                    continue
            lats.append(row.latitude)
            lons.append(row.longitude)
            pops.append(row.population)
            radii.append(city_radius_m(row.population))
            rows.append(row._asdict())
        frame = pd.DataFrame(rows)
        frame["metro_population"] = pops
        kept_frames.append(frame)
    cities = pd.concat(kept_frames, ignore_index=True)
    cities["radius_m"] = cities["population"].map(city_radius_m).round(0)
    return cities.sort_values(["country_code", "population"], ascending=[True, False])


def main() -> None:
    raw = pd.read_csv(REFERENCE_DIR / "cities15000_40markets.csv", keep_default_na=False,
                      dtype={"admin1_code": str})
    cities = curate(raw)
    cols = ["geonameid", "name", "country_code", "admin1_name", "latitude", "longitude",
            "population", "metro_population", "radius_m"]
    cities[cols].to_csv(REFERENCE_DIR / "market_cities.csv", index=False)
    print(f"{len(raw)} GeoNames places -> {len(cities)} market cities")


if __name__ == "__main__":
    main()
