"""The HTTP geocoder's safety: https unless http is allowed, a cache only its owner can
read, and misses that are asked again once they are old."""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from types import SimpleNamespace

import pytest

from geosearch.ingest.geocode import GeocodeCache, GeocodeResult, GeopyGeocoder
from geosearch.settings import Settings

DAY = 86_400.0
BERLIN = GeocodeResult(52.53, 13.41, "street")


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def age(cache: GeocodeCache, key: str, seconds: float) -> None:
    """Make the cached answer for ``key`` ``seconds`` older."""
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE geocode SET stored_at = stored_at - ? WHERE key = ?", (seconds, key))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- https --------------------------------------------------------------------------------

def test_http_is_refused_unless_allowed():
    env = {"GEOSEARCH_GEOCODER": "nominatim", "GEOSEARCH_GEOCODER_SCHEME": "http"}
    with pytest.raises(ValueError, match="GEOSEARCH_GEOCODER_ALLOW_HTTP=1"):
        Settings.from_env(env)
    with pytest.raises(ValueError, match="GEOSEARCH_GEOCODER_ALLOW_HTTP=1"):
        Settings.from_env({**env, "GEOSEARCH_GEOCODER_ALLOW_HTTP": "0"})
    assert Settings.from_env({**env, "GEOSEARCH_GEOCODER_ALLOW_HTTP": "1"}).geocoder_allow_http
    with pytest.raises(ValueError, match="GEOSEARCH_GEOCODER_ALLOW_HTTP must be 1 or 0"):
        Settings.from_env({**env, "GEOSEARCH_GEOCODER_ALLOW_HTTP": "perhaps"})
    with pytest.raises(ValueError, match="must be https"):
        Settings(geocoder="photon", geocoder_scheme="ftp", geocoder_allow_http=True)
    assert Settings(geocoder="nominatim").geocoder_scheme == "https"


def test_the_geocoder_itself_refuses_http_unless_allowed(tmp_path):
    args = ("nominatim", "127.0.0.1:9", "http", tmp_path / "cache" / "geocode.sqlite", 0.0)
    with pytest.raises(ValueError, match="in clear"):
        GeopyGeocoder.from_settings(*args)
    assert not (tmp_path / "cache").exists()
    assert GeopyGeocoder.from_settings(*args, allow_http=True).service.scheme == "http"


# -- the cache file -----------------------------------------------------------------------

def test_a_new_cache_is_made_readable_by_its_owner_only(tmp_path, umask_022):
    cache = GeocodeCache(tmp_path / "var" / "geocode.sqlite")
    cache.put("DE|torstrasse 1, berlin", BERLIN)
    assert mode(tmp_path / "var") == 0o700
    assert [(p.name, mode(p)) for p in (tmp_path / "var").iterdir()] == [
        ("geocode.sqlite", 0o600)]


def test_an_old_cache_is_tightened_and_keeps_its_hits(tmp_path, umask_022):
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    with sqlite3.connect(folder / "geocode.sqlite") as db:  # as caches were written before
        db.execute("CREATE TABLE geocode (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO geocode VALUES ('found', ?), ('missed', 'null')",
                   ('{"lat": 52.53, "lon": 13.41, "precision": "street", "city": null}',))
    (folder / "geocode.sqlite").chmod(0o644)

    cache = GeocodeCache(folder / "geocode.sqlite")

    assert (mode(folder), mode(folder / "geocode.sqlite")) == (0o700, 0o600)
    assert cache.get("found") == (True, BERLIN)
    assert cache.get("missed") == (False, None)  # a miss of unknown age is asked again


def test_a_folder_anyone_can_write_is_refused_and_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(PermissionError, match="writable by anyone"):
        GeocodeCache(shared / "geocode.sqlite")
    assert mode(shared) == 0o1777 and not (shared / "geocode.sqlite").exists()


# -- misses expire ------------------------------------------------------------------------

def test_misses_expire_and_hits_stay(tmp_path):
    cache = GeocodeCache(tmp_path / "geocode.sqlite", miss_ttl_days=7)
    cache.put("missed", None)
    cache.put("found", BERLIN)
    assert cache.get("missed") == (True, None)
    age(cache, "missed", 6.9 * DAY)
    assert cache.get("missed") == (True, None)
    age(cache, "missed", 0.2 * DAY)
    assert cache.get("missed") == (False, None)
    age(cache, "found", 3650 * DAY)
    assert cache.get("found") == (True, BERLIN)


def test_an_expired_miss_is_asked_again_once(tmp_path):
    answers = [None, SimpleNamespace(latitude=52.53, longitude=13.41)]
    asked = []

    def geocode(query, exactly_one=True, **kwargs):
        asked.append(query)
        return answers[len(asked) - 1]

    cache = GeocodeCache(tmp_path / "geocode.sqlite", miss_ttl_days=1)
    geocoder = GeopyGeocoder(SimpleNamespace(geocode=geocode), cache, min_delay_s=0.0)
    where = ("Torstraße 1", "Berlin", "10119", "DE")
    assert geocoder.geocode(*where) is None
    assert geocoder.geocode(*where) is None and len(asked) == 1
    with closing(sqlite3.connect(cache.path)) as db:
        [(key,)] = db.execute("SELECT key FROM geocode").fetchall()
    age(cache, key, 2 * DAY)
    assert geocoder.geocode(*where) == BERLIN and len(asked) == 2
    age(cache, key, 3650 * DAY)
    assert geocoder.geocode(*where) == BERLIN and len(asked) == 2


def test_the_miss_ttl_is_a_setting():
    assert Settings().geocode_miss_ttl_days == 30
    assert Settings.from_env({"GEOSEARCH_GEOCODE_MISS_TTL_DAYS": "2.5"}).geocode_miss_ttl_days \
        == 2.5
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ValueError, match="GEOSEARCH_GEOCODE_MISS_TTL_DAYS"):
            Settings.from_env({"GEOSEARCH_GEOCODE_MISS_TTL_DAYS": bad})
