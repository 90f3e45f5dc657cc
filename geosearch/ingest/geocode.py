"""Geocoders: the ``Geocoder`` protocol, an offline gazetteer and an HTTP one over geopy.

The offline :class:`GazetteerGeocoder` resolves a city name in a country to the GeoNames
centre of that city (precision ``city``). :class:`GeopyGeocoder` asks a street-level
service (Nominatim, Photon or Pelias) over https (http only when allowed) behind a rate
limiter and a persistent cache readable by its owner alone, so re-ingesting a feed never
asks for the same address twice (an address not found is asked again once its answer is
``miss_ttl_days`` old).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from geosearch.geo import geodesic_m
from geosearch.reference import REFERENCE_DIR, fold, market_cities
from geosearch.settings import GEOCODE_MISS_TTL_DAYS, check_geocoder_scheme


@dataclass(frozen=True)
class GeocodeResult:
    """A position found for an address, and how precise it is (``city`` or ``street``)."""

    lat: float
    lon: float
    precision: str
    city: str | None = None


class Geocoder(Protocol):
    """Turns an address into a position; None when it cannot be found."""

    def geocode(self, address: str, city: str, postcode: str | None,
                country: str) -> GeocodeResult | None:
        """The position of the address, or None."""
        ...


class GazetteerGeocoder:
    """Offline, city-level geocoding over the GeoNames cities of the markets.

    A city name is matched case- and accent-insensitively within the country; the most
    populous match wins. Also finds the city nearest to a point (:meth:`city_near`).
    """

    def __init__(self, cities: pd.DataFrame | None = None) -> None:
        self._cities = cities

    @cached_property
    def cities(self) -> pd.DataFrame:
        """Curated market cities first, then every GeoNames place (districts too)."""
        if self._cities is not None:
            return self._cities
        curated = market_cities()[["name", "country_code", "latitude", "longitude",
                                   "population"]].assign(curated=True)
        raw = pd.read_csv(REFERENCE_DIR / "cities15000_40markets.csv", keep_default_na=False,
                          usecols=["name", "country_code", "latitude", "longitude",
                                   "population"]).assign(curated=False)
        frame = pd.concat([curated, raw], ignore_index=True)
        return frame.sort_values(["curated", "population"], ascending=[False, False],
                                 kind="stable").reset_index(drop=True)

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], int]:
        index: dict[tuple[str, str], int] = {}
        for pos, (name, code) in enumerate(zip(self.cities["name"], self.cities["country_code"],
                                               strict=True)):
            index.setdefault((code, fold(name)), pos)
        return index

    def geocode(self, address: str, city: str, postcode: str | None,
                country: str) -> GeocodeResult | None:
        """The centre of ``city`` in ``country`` (precision ``city``), or None."""
        pos = self._by_name.get((country, fold(city)))
        if pos is None:
            return None
        row = self.cities.iloc[pos]
        return GeocodeResult(float(row.latitude), float(row.longitude), "city", str(row["name"]))

    def city_near(self, lat: float, lon: float, country: str,
                  max_m: float = 25_000.0) -> str | None:
        """The market city of ``country`` whose extent best holds a point, or None.

        Distances are measured in units of each city's extent radius, so a point in a
        big city's district is named after the city, not the district; nothing farther
        than ``max_m`` is named.
        """
        frame = market_cities()
        frame = frame[frame["country_code"] == country]
        if frame.empty:
            return None
        d = geodesic_m(lat, lon, frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
        best = int(np.argmin(d / frame["radius_m"].to_numpy()))
        return str(frame["name"].iloc[best]) if d[best] <= max_m else None


def _owner_only(path: Path, mode: int) -> None:
    """Give ``path`` (ours) ``mode``, an owner-only one, when others have any access."""
    info = path.stat()
    if not stat.S_IMODE(info.st_mode) & 0o077:
        return
    if info.st_mode & stat.S_IWOTH or info.st_uid != os.getuid():
        raise PermissionError(
            f"the geocode cache needs a folder and file of its own: {path} is "
            f"{'writable by anyone' if info.st_mode & stat.S_IWOTH else 'not ours'} "
            "(set GEOSEARCH_GEOCODE_CACHE to a path in a private folder)")
    path.chmod(mode)


class GeocodeCache:
    """A persistent address -> result cache in SQLite (safe across processes).

    The addresses of a feed are not for other users of the machine: the file is made
    0600 and its folder 0700 (created so, or tightened when others could read them). A
    miss (an address the service did not find) counts for ``miss_ttl_days``, then the
    address is asked again; a position found is kept for good.
    """

    def __init__(self, path: str | Path, miss_ttl_days: float = GEOCODE_MISS_TTL_DAYS) -> None:
        self.path = Path(path)
        self.miss_ttl_s = miss_ttl_days * 86_400
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.path.parent, 0o700)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        _owner_only(self.path, 0o600)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS geocode (key TEXT PRIMARY KEY, value TEXT, "
                       "stored_at REAL)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(geocode)")}
            if "stored_at" not in columns:  # a cache from before misses expired
                db.execute("ALTER TABLE geocode ADD COLUMN stored_at REAL")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> tuple[bool, GeocodeResult | None]:
        """``(hit, result)``; a cached miss is ``(True, None)`` until it is
        ``miss_ttl_days`` old (or of unknown age), then ``(False, None)``."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT value, stored_at FROM geocode WHERE key = ?",
                             (key,)).fetchone()
        if row is None:
            return False, None
        value, stored_at = json.loads(row[0]), row[1]
        if value is not None:
            return True, GeocodeResult(**value)
        fresh = stored_at is not None and time.time() - stored_at < self.miss_ttl_s
        return fresh, None

    def put(self, key: str, result: GeocodeResult | None) -> None:
        """Remember the answer for ``key`` (a miss too), as of now."""
        value = None if result is None else result.__dict__
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO geocode (key, value, stored_at) VALUES (?, ?, ?)",
                       (key, json.dumps(value), time.time()))


class GeopyGeocoder:
    """Street-level geocoding through any geopy geocoder, rate-limited and cached.

    Parameters
    ----------
    service : a geopy geocoder instance (``Nominatim``, ``Photon``, ``Pelias``...).
    cache : where answers are kept; an address found is never asked again, one not
        found only once its miss is older than the cache's ``miss_ttl_days``.
    min_delay_s : the least time between two requests (Nominatim's policy is 1 s).
    """

    def __init__(self, service, cache: GeocodeCache, min_delay_s: float = 1.0) -> None:
        self.service = service
        self.cache = cache
        self.min_delay_s = min_delay_s
        self.requests = 0
        self._last = 0.0

    @classmethod
    def from_settings(cls, provider: str, domain: str | None, scheme: str, cache_path: Path,
                      min_delay_s: float, user_agent: str = "geosearch-ingest", *,
                      allow_http: bool = False,
                      miss_ttl_days: float = GEOCODE_MISS_TTL_DAYS) -> GeopyGeocoder:
        """Build one for ``provider`` (nominatim, photon or pelias) at ``domain``; over
        ``scheme`` https, or http when ``allow_http`` says so."""
        from geopy.geocoders import Nominatim, Pelias, Photon

        kinds = {"nominatim": Nominatim, "photon": Photon, "pelias": Pelias}
        if provider not in kinds:
            raise ValueError(f"geocoder {provider!r}; valid: {', '.join(kinds)}")
        check_geocoder_scheme(scheme, allow_http)
        kwargs: dict = {"scheme": scheme, "user_agent": user_agent, "timeout": 10}
        if domain:
            kwargs["domain"] = domain
        if provider == "pelias":
            kwargs.pop("user_agent")
        return cls(kinds[provider](**kwargs), GeocodeCache(cache_path, miss_ttl_days),
                   min_delay_s)

    def _wait_turn(self) -> None:
        delay = self._last + self.min_delay_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last = time.monotonic()

    def geocode(self, address: str, city: str, postcode: str | None,
                country: str) -> GeocodeResult | None:
        """The street-level position of the address, from the cache when known."""
        query = ", ".join(p for p in (address, postcode or "", city) if p)
        key = f"{country}|{fold(query)}"
        hit, cached = self.cache.get(key)
        if hit:
            return cached
        self._wait_turn()
        self.requests += 1
        location = self.service.geocode(query, exactly_one=True,
                                        **self._country_kwargs(country))
        result = None if location is None else GeocodeResult(
            float(location.latitude), float(location.longitude), "street")
        self.cache.put(key, result)
        return result

    def _country_kwargs(self, country: str) -> dict:
        from geopy.geocoders import Nominatim

        return {"country_codes": country.lower()} if isinstance(self.service, Nominatim) else {}
