"""Generate the marketplace's raw feed, deterministically, with its truth and defects.

Writes, under data/feed/:
- ``spaces.csv``: the raw feed as partners send it (UTF-8 with a BOM), ~5,000 rows in the
  40 markets of ``markets_40.csv`` with their quotas;
- ``truth.csv``: the true position, country and city of every row, and whether the row is
  a valid space that must be loaded;
- ``defects.csv``: every planted defect: row, id, type, what the pipeline should do.

The same bytes come out on every run (seeded RNG, Faker pinned in setup.cfg's dev extra).
Run: python scripts/generate_feed.py [--out DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import ftfy.bad_codecs  # noqa: F401 - registers the sloppy-windows-1252 codec
from faker import Faker

from geosearch.geo import WGS84
from geosearch.model import Amenity
from geosearch.reference import REFERENCE_DIR, countries, market_cities, markets

FIELDS = ["id", "name", "address", "city", "postcode", "country", "lat", "lon", "amenities",
          "capacity", "price_day", "currency", "status"]

# Share of spaces offering each amenity (a calibration guess from public listings).
AMENITY_FREQUENCY = {
    "wifi": 0.97, "coffee": 0.85, "meeting_rooms": 0.72, "printing": 0.6, "kitchen": 0.62,
    "wheelchair_accessible": 0.45, "reception": 0.5, "mail_handling": 0.36,
    "phone_booths": 0.42, "lockers": 0.35, "event_space": 0.3, "access_24_7": 0.3,
    "bike_storage": 0.3, "parking": 0.36, "showers": 0.2, "outdoor_space": 0.22,
    "pet_friendly": 0.15, "childcare": 0.04,
}
# Approximate units of local currency per US dollar (late 2025), for day prices only.
USD_RATE = {
    "GBP": 0.76, "EUR": 0.87, "CHF": 0.8, "SEK": 9.5, "DKK": 6.5, "NOK": 10.1, "PLN": 3.7,
    "CZK": 21.0, "USD": 1.0, "CAD": 1.39, "MXN": 18.5, "BRL": 5.4, "ARS": 1400.0,
    "COP": 3900.0, "CLP": 950.0, "PEN": 3.4, "AUD": 1.53, "NZD": 1.75, "JPY": 152.0,
    "SGD": 1.3, "HKD": 7.78, "INR": 88.0, "IDR": 16500.0, "PHP": 58.0, "THB": 32.5,
    "MYR": 4.2, "AED": 3.67, "ILS": 3.3, "TRY": 42.0, "ZAR": 17.5, "NGN": 1480.0,
    "KES": 129.0,
}
SUFFIXES = ["Coworking", "Workspace", "Hub", "Offices", "Studios", "Work Club", "Commons"]
COUNTRY_NAMES = {
    "DE": ["Deutschland", "Germany"], "GB": ["United Kingdom", "UK", "Great Britain"],
    "US": ["United States", "USA"], "FR": ["France"], "ES": ["España", "Spain"],
    "IT": ["Italia"], "NL": ["Nederland", "Netherlands"], "CH": ["Schweiz", "Suisse"],
    "AT": ["Österreich"], "BR": ["Brasil"], "MX": ["México"], "JP": ["Japan"],
    "SE": ["Sverige"], "PL": ["Polska"], "TR": ["Türkiye"], "CA": ["Canada"],
}
UNKNOWN_AMENITIES = ["sauna", "free beer", "ping pong", "rooftop bar", "nap pods"]
AMENITY_SYNONYMS = ["WiFi", "Wi-Fi", "Meeting Rooms", "24/7 access", "Coffee "]
DEFECT_COUNTS = {
    "swapped_latlon": 50, "outside_country": 40, "null_island": 30, "decimal_comma": 50,
    "mojibake": 45, "duplicate": 50, "missing_name": 25, "missing_city": 25,
    "unknown_amenity": 40, "negative_capacity": 30, "country_name": 40,
}
# What the pipeline is expected to do with each defect.
EXPECTED = {
    "swapped_latlon": "repair", "outside_country": "reject", "null_island": "geocode",
    "decimal_comma": "repair", "mojibake": "repair", "duplicate": "reject",
    "missing_name": "reject", "missing_city": "repair", "unknown_amenity": "repair",
    "negative_capacity": "repair", "country_name": "repair",
}
INACTIVE_SHARE = 0.04
MISSING_COORDS_SHARE = 0.06


@dataclass
class Row:
    """One feed row under construction, with the truth about it."""

    values: dict[str, str]
    true_lat: float
    true_lon: float
    country: str
    city: str
    defects: list[str] = field(default_factory=list)


def faker_locale(suggestion: str) -> str:
    """The first usable Faker locale of markets_40.csv's suggestion column."""
    first = suggestion.split("|")[0].split("(")[0].split("+")[0]
    return first.strip("* ")


def brands_by_country() -> dict[str, list[str]]:
    """Real coworking brands (name-suggestion-index) by the countries they operate in."""
    items = json.loads((REFERENCE_DIR / "coworking_brands_nsi.json").read_text())["items"]
    out: dict[str, list[str]] = {}
    for item in items:
        for place in item["locationSet"].get("include", []):
            if isinstance(place, str):
                code = place.split("-")[0].split(".")[0].upper()
                if len(code) == 2:
                    out.setdefault(code, []).append(item["displayName"])
            elif place == [0, 0] or place == "001":
                out.setdefault("*", []).append(item["displayName"])
    return out


def point_in_disk(rng: random.Random, lat: float, lon: float, radius_m: float):
    """A uniformly random point within ``radius_m`` of a centre (geodesic)."""
    dist = radius_m * math.sqrt(rng.random())
    lon2, lat2, _ = WGS84.fwd(lon, lat, rng.uniform(0, 360), dist)
    return round(lat2, 6), round(((lon2 + 180) % 360) - 180, 6)


class FeedGenerator:
    """Builds the rows of one feed from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cities = market_cities()
        self.markets = markets()
        self.brands = brands_by_country()
        self.countries = countries()
        self._city_choices: dict[str, tuple[list, list[float]]] = {}
        self.fakers: dict[str, Faker] = {}
        for m in self.markets.itertuples():
            fk = Faker(faker_locale(m.faker_locale_suggestion))
            fk.seed_instance(seed + len(self.fakers))
            self.fakers[m.iso_a2] = fk

    def country_cities(self, code: str):
        """A country's cities of 50,000+ (the 60 largest), weighted by population^0.8."""
        if code in self._city_choices:
            return self._city_choices[code]
        frame = self.cities[self.cities["country_code"] == code]
        frame = frame[frame["population"] >= 50_000].head(60)
        if frame.empty:
            frame = self.cities[self.cities["country_code"] == code].head(5)
        choice = list(frame.itertuples()), [p**0.8 for p in frame["population"]]
        self._city_choices[code] = choice
        return choice

    def space(self, code: str, currency: str, usd_month: float, seq: int) -> Row:
        """One clean space of the market ``code``."""
        cities, weights = self.country_cities(code)
        fk = self.fakers[code]
        while True:
            city = self.rng.choices(cities, weights)[0]
            lat, lon = point_in_disk(self.rng, city.latitude, city.longitude, city.radius_m)
            if self.countries.distance_outside_m(code, lat, lon) == 0.0:
                break
        brands = self.brands.get(code, []) + self.brands.get("*", [])
        if brands and self.rng.random() < 0.25:
            name = f"{self.rng.choice(brands)} {city.name} {fk.street_name()}"
        else:
            name = f"{fk.last_name()} {self.rng.choice(SUFFIXES)}"
        amenities = [a.value for a in Amenity if self.rng.random() < AMENITY_FREQUENCY[a.value]]
        capacity = max(5, int(self.rng.lognormvariate(math.log(60), 0.7)))
        price = usd_month / 12 * USD_RATE[currency] * self.rng.uniform(0.6, 1.6)
        values = {
            "id": f"sd-{code.lower()}-{seq:05d}", "name": name,
            "address": fk.street_address().replace("\n", ", "), "city": city.name,
            "postcode": fk.postcode() if self.rng.random() < 0.92 else "", "country": code,
            "lat": f"{lat:.6f}", "lon": f"{lon:.6f}", "amenities": ";".join(amenities),
            "capacity": str(capacity), "price_day": f"{price:.2f}", "currency": currency,
            "status": "inactive" if self.rng.random() < INACTIVE_SHARE else "active",
        }
        return Row(values, lat, lon, code, city.name)

    def clean_rows(self) -> list[Row]:
        rows = []
        for m in self.markets.itertuples():
            for seq in range(1, int(m.quota_of_5000) + 1):
                rows.append(self.space(m.iso_a2, m.currency_code,
                                       float(m.hotdesk_usd_month_median_ASSUMPTION), seq))
        return rows

    def plant(self, rows: list[Row]) -> list[dict[str, str]]:
        """Blank ~6% of coordinates and plant the defects; returns the defect manifest."""
        manifest: list[dict[str, str]] = []
        pool = list(range(len(rows)))
        self.rng.shuffle(pool)
        for i in pool[: int(len(rows) * MISSING_COORDS_SHARE)]:
            rows[i].values["lat"] = rows[i].values["lon"] = ""
            rows[i].defects.append("no_coordinates")
        with_coords = [i for i in pool if rows[i].values["lat"]]
        taken: set[int] = set()
        for kind, count in DEFECT_COUNTS.items():
            planter = getattr(self, f"_plant_{kind}")
            candidates = (i for i in with_coords if i not in taken)
            planted = 0
            for i in candidates:
                if planted == count:
                    break
                detail = planter(rows, i)
                if detail is None:
                    continue
                taken.add(i)
                planted += 1
                j = len(rows) - 1 if kind == "duplicate" else i
                rows[j].defects.append(kind)
                manifest.append({"id": rows[j].values["id"], "defect": kind,
                                 "expected": EXPECTED[kind], "detail": detail})
        return manifest

    def _plant_swapped_latlon(self, rows, i):
        v = rows[i].values
        lat, lon = float(v["lat"]), float(v["lon"])
        if abs(lon) > 90 or self.countries.in_country(rows[i].country, lon, lat):
            return None  # the swap would be out of range or undetectable: pick another row
        v["lat"], v["lon"] = v["lon"], v["lat"]
        return "lat and lon exchanged"

    def _plant_outside_country(self, rows, i):
        other = self.cities[self.cities["country_code"] != rows[i].country].sample(
            1, random_state=self.rng.randrange(2**31)).iloc[0]
        lat, lon = float(other.latitude), float(other.longitude)
        d = self.countries.distance_outside_m(rows[i].country, lat, lon)
        if d is None or d < 50_000:
            return None
        rows[i].values["lat"], rows[i].values["lon"] = f"{lat:.6f}", f"{lon:.6f}"
        return f"moved to {other['name']}, {other.country_code}"

    def _plant_null_island(self, rows, i):
        rows[i].values["lat"], rows[i].values["lon"] = "0", "0"
        return "coordinates (0, 0)"

    def _plant_decimal_comma(self, rows, i):
        v = rows[i].values
        v["lat"], v["lon"] = v["lat"].replace(".", ","), v["lon"].replace(".", ",")
        return "decimal commas in lat/lon"

    def _plant_mojibake(self, rows, i):
        v = rows[i].values
        for key in ("city", "address", "name"):
            if not v[key].isascii():
                v[key] = v[key].encode("utf-8").decode("sloppy-windows-1252")
                return f"{key} is UTF-8 read as cp1252"
        return None

    def _plant_duplicate(self, rows, i):
        v = dict(rows[i].values)
        v["id"] = f"{v['id']}-dup"
        v["name"] = v["name"].upper() if self.rng.random() < 0.5 else f" {v['name']} "
        rows.append(Row(v, rows[i].true_lat, rows[i].true_lon, rows[i].country, rows[i].city))
        self._duplicates.append((v["id"], rows[i].values["id"]))
        return f"copy of {rows[i].values['id']} under a new id"

    def _plant_missing_name(self, rows, i):
        rows[i].values["name"] = ""
        return "name empty"

    def _plant_missing_city(self, rows, i):
        rows[i].values["city"] = ""
        return "city empty"

    def _plant_unknown_amenity(self, rows, i):
        tokens = rows[i].values["amenities"].split(";")
        tokens.insert(self.rng.randrange(len(tokens) + 1), self.rng.choice(UNKNOWN_AMENITIES))
        if self.rng.random() < 0.5:
            tokens.append(self.rng.choice(AMENITY_SYNONYMS))
        rows[i].values["amenities"] = ";".join(t for t in tokens if t)
        return "amenity tokens outside the vocabulary"

    def _plant_negative_capacity(self, rows, i):
        rows[i].values["capacity"] = f"-{rows[i].values['capacity']}"
        return "capacity below zero"

    def _plant_country_name(self, rows, i):
        names = COUNTRY_NAMES.get(rows[i].country)
        if not names:
            return None
        rows[i].values["country"] = self.rng.choice(names)
        return "country given by name"

    def generate(self) -> tuple[list[Row], list[dict[str, str]]]:
        rows = self.clean_rows()
        self._duplicates: list[tuple[str, str]] = []
        manifest = self.plant(rows)
        # Copies were appended at the end: shuffle them in, each still after its source,
        # so that "the first one wins" is the rule.
        order = list(range(len(rows)))
        self.rng.shuffle(order)
        rows = [rows[j] for j in order]
        ids = [r.values["id"] for r in rows]
        for dup_id, source in self._duplicates:
            a, b = ids.index(source), ids.index(dup_id)
            if b < a:
                rows[a], rows[b] = rows[b], rows[a]
                ids[a], ids[b] = ids[b], ids[a]
        return rows, manifest


def write_csv(path: Path, fieldnames: list[str], records, bom: bool = False) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/feed"))
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, manifest = FeedGenerator(args.seed).generate()
    row_of = {r.values["id"]: n for n, r in enumerate(rows, start=1)}
    write_csv(args.out / "spaces.csv", FIELDS, (r.values for r in rows), bom=True)
    invalid = {"outside_country", "duplicate", "missing_name"}
    truth = [{
        "row": n, "id": r.values["id"], "lat": f"{r.true_lat:.6f}", "lon": f"{r.true_lon:.6f}",
        "country": r.country, "city": r.city, "status": r.values["status"],
        "valid": "false" if invalid & set(r.defects) else "true",
        "geocoded": "true" if {"no_coordinates", "null_island"} & set(r.defects) else "false",
    } for n, r in enumerate(rows, start=1)]
    write_csv(args.out / "truth.csv", list(truth[0]), truth)
    defects = sorted(({"row": row_of[d["id"]], **d} for d in manifest), key=lambda d: d["row"])
    write_csv(args.out / "defects.csv", ["row", "id", "defect", "expected", "detail"], defects)
    print(f"{len(rows)} rows, {len(defects)} planted defects -> {args.out}")


if __name__ == "__main__":
    main()
