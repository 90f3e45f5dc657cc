"""PostGIS as the system of record: engine, schema migrations and the atomic load."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from geosearch.ingest.pipeline import IngestResult
from geosearch.model import amenity_mask
from geosearch.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
# Loading and migrating are long by nature: the serving statement timeout does not apply.
NO_TIMEOUT = "SET LOCAL statement_timeout = 0"
LOAD_COLUMNS = ("id", "name", "address", "city", "city_key", "postcode", "country", "lat",
                "lon", "geog", "geom", "amenities", "amenity_mask", "capacity", "price_day",
                "currency", "status", "h3_r7", "h3_r8", "h3_r9", "geocode_precision",
                "feed_row", "dataset_version")


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver whatever the URL names (``postgresql://`` and the like)."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(settings: Settings) -> Engine:
    """A pooled engine: pre-ping, connect timeout, and a statement timeout per session."""
    return sa.create_engine(
        normalise_url(settings.database_url or ""),
        pool_pre_ping=True, pool_size=settings.pool_size, max_overflow=settings.pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 3,
                      "options": f"-c statement_timeout={settings.statement_timeout_ms}"},
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates PostGIS where allowed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(sa.text(NO_TIMEOUT))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_version(engine: Engine) -> str | None:
    """The version of the dataset being served, or None when none was loaded."""
    with engine.begin() as connection:
        connection.execute(sa.text(NO_TIMEOUT))
        return connection.execute(sa.text("SELECT version FROM dataset_state")).scalar()


def _scalar(value):
    """A frame cell as a plain Python value; pandas' missing markers become None."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _rows(result: IngestResult):
    version = result.report.dataset_version
    for r in result.frame.itertuples(index=False):
        point = f"SRID=4326;POINT({r.lon!r} {r.lat!r})"
        v = {k: _scalar(getattr(r, k)) for k in
             ("postcode", "capacity", "price_day", "currency", "amenities")}
        yield (r.id, r.name, r.address, r.city, r.city.strip().casefold(), v["postcode"],
               r.country, float(r.lat), float(r.lon), point, point, v["amenities"],
               amenity_mask(v["amenities"]), v["capacity"], v["price_day"],
               v["currency"], r.status, r.h3_r7, r.h3_r8, r.h3_r9, r.geocode_precision,
               int(r.feed_row), version)


def load(result: IngestResult, engine: Engine) -> bool:
    """Load an ingest result atomically; returns False when the data is unchanged.

    The rows are COPYed into a staging table first; then one short transaction replaces
    the served rows and the dataset version together. Readers see the old dataset or the
    new one, never half of either; any failure leaves the old dataset in place.
    """
    migrate(engine)
    started = datetime.now(UTC)
    report = result.report
    report.unchanged = current_version(engine) == report.dataset_version
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(NO_TIMEOUT)
            if not report.unchanged:
                cur.execute("CREATE TEMP TABLE spaces_staging (LIKE spaces) ON COMMIT DROP")
                columns = ", ".join(LOAD_COLUMNS)
                with cur.copy(f"COPY spaces_staging ({columns}) FROM STDIN") as copy:
                    for row in _rows(result):
                        copy.write_row(row)
                cur.execute("LOCK TABLE spaces IN EXCLUSIVE MODE")
                cur.execute("DELETE FROM spaces")
                cur.execute(f"INSERT INTO spaces ({columns}) SELECT {columns} FROM spaces_staging")
                cur.execute(
                    "INSERT INTO dataset_state (id, version, loaded_at, feed) "
                    "VALUES (1, %s, now(), %s) ON CONFLICT (id) DO UPDATE SET "
                    "version = EXCLUDED.version, loaded_at = EXCLUDED.loaded_at, "
                    "feed = EXCLUDED.feed", (report.dataset_version, report.feed))
            cur.execute(
                "INSERT INTO ingest_runs (started_at, finished_at, feed, dataset_version, "
                "outcome, report) VALUES (%s, now(), %s, %s, %s, %s)",
                (started, report.feed, report.dataset_version,
                 "unchanged" if report.unchanged else "loaded",
                 json.dumps(report.to_dict(), ensure_ascii=False)))
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    if not report.unchanged:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("SET statement_timeout = 0; ANALYZE spaces"))
    return not report.unchanged


class LoadError(Exception):
    """A load into PostGIS failed; the previous dataset is still being served."""


def load_into_postgis(result: IngestResult, settings: Settings) -> bool:
    """Load into the database the settings name (``geosearch ingest --database``).

    Raises LoadError, with the database's own message, when the load fails.
    """
    engine = make_engine(settings)
    try:
        return load(result, engine)
    except (psycopg.Error, sa.exc.SQLAlchemyError) as exc:
        raise LoadError(str(exc).splitlines()[0]) from exc
    finally:
        engine.dispose()
