"""The ingestion pipeline: decode -> normalise -> validate -> geocode -> dedupe -> H3."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
from tqdm import tqdm

from geosearch.geo import latlng_cells
from geosearch.ingest.decode import read_feed
from geosearch.ingest.dedupe import find_duplicates
from geosearch.ingest.geocode import GazetteerGeocoder, Geocoder
from geosearch.ingest.normalise import normalise
from geosearch.ingest.records import Record, Rejected
from geosearch.ingest.report import IngestReport
from geosearch.ingest.validate import validate_position
from geosearch.model import SPACE_FIELDS
from geosearch.reference import countries

COLUMNS = [*SPACE_FIELDS, "feed_row"]


@dataclass
class IngestResult:
    """The loaded spaces (one row per space, EPSG:4326 points) and the report."""

    frame: gpd.GeoDataFrame
    report: IngestReport

    def meta(self) -> dict:
        """Metadata kept with the dataset (snapshot footer or ``ingest_runs`` row)."""
        return {"dataset_version": self.report.dataset_version, "feed": self.report.feed,
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "input_rows": self.report.input_rows, "loaded": self.report.loaded}


def locate(record: Record, geocoder: Geocoder, gazetteer: GazetteerGeocoder) -> None:
    """Geocode a row without a point; name the city of a row without one (the stage after
    :func:`~geosearch.ingest.validate.validate_position`; a write through the API runs it
    too)."""
    index = countries()
    if record.lat is None or record.lon is None:  # both or neither (normalise)
        if not record.city and not record.address:
            raise Rejected("ungeocodable", "no coordinates and neither address nor city")
        found = geocoder.geocode(record.address, record.city, record.postcode, record.country)
        if found is None and geocoder is not gazetteer:
            found = gazetteer.geocode(record.address, record.city, record.postcode,
                                      record.country)
        if found is None:
            raise Rejected("geocode_failed", f"no coordinates, and {record.city!r} in "
                           f"{record.country} was not found by the geocoder")
        if not index.in_country(record.country, found.lat, found.lon):
            raise Rejected("geocode_failed", f"the geocoder placed {record.city!r} outside "
                           f"{record.country}")
        record.lat, record.lon = found.lat, found.lon
        record.geocode_precision = found.precision
        record.repair("geocoded", f"({found.lat}, {found.lon}) at {found.precision} precision")
    if not record.city:
        city = gazetteer.city_near(record.lat, record.lon, record.country)
        record.city = city or ""
        record.repair("missing_city", f"city from coordinates: {city}" if city
                      else "city empty, and no gazetteer city within 25 km")


def dataset_version(frame: pd.DataFrame) -> str:
    """A digest of the loaded spaces: the same data always gets the same version."""
    canon = frame[COLUMNS].sort_values("id").to_json(orient="values", double_precision=7)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def field_value(record: Record, name: str) -> object:
    """The value of the Space field ``name`` of a record (H3 cells kept by resolution), as
    a load's frame holds it and a space written alone is made from
    (:func:`geosearch.loadrows.space_values`)."""
    if name.startswith("h3_r"):
        return record.cells[int(name.removeprefix("h3_r"))]
    if name == "amenities":
        return list(record.amenities)
    return getattr(record, name)


_DTYPES = {"capacity": "Int64", "price_day": "Float64"}  # nullable numbers


def to_frame(records: list[Record]) -> gpd.GeoDataFrame:
    """The frame of located records (their H3 cells made): the Space fields and the feed
    row, EPSG:4326 points; what an ingest loads."""
    data = records_frame(records)
    return gpd.GeoDataFrame(data, geometry=gpd.points_from_xy(data["lon"], data["lat"]),
                            crs="EPSG:4326")


def records_frame(records: list[Record]) -> pd.DataFrame:
    """The Space fields and the feed row of located records, without the points: what a
    load's rows are made of (:func:`to_frame` adds the points)."""
    data = pd.DataFrame({
        **{name: pd.array([field_value(r, name) for r in records], dtype=_DTYPES.get(name))
           if name in _DTYPES else [field_value(r, name) for r in records]
           for name in SPACE_FIELDS},
        "feed_row": [r.row for r in records],
    }, columns=COLUMNS)
    data["lat"] = data["lat"].astype(float)
    data["lon"] = data["lon"].astype(float)
    return data


def run_pipeline(feed: str | Path, geocoder: Geocoder | None = None,
                 progress: bool | None = None) -> IngestResult:
    """Run a feed file through every stage; every row ends loaded or rejected.

    ``geocoder`` defaults to the offline gazetteer; rows it cannot place fall back to
    the gazetteer. ``progress`` shows a bar (default: when stderr is a terminal).
    Raises :class:`geosearch.ingest.decode.FeedError` when the file cannot be read.
    """
    gazetteer = GazetteerGeocoder()
    geocoder = geocoder or gazetteer
    index = countries()
    records = read_feed(feed)
    report = IngestReport(feed=str(feed), input_rows=len(records))
    survivors: list[Record] = []
    ids: set[str] = set()
    show = sys.stderr.isatty() if progress is None else progress
    for record in tqdm(records, desc="ingest", unit="row", disable=not show):
        try:
            normalise(record)
            if record.id in ids:
                raise Rejected("duplicate_id", f"id {record.id!r} appears earlier in the feed")
            validate_position(record, index)
            locate(record, geocoder, gazetteer)
        except Rejected as verdict:
            report.reject(record, verdict)
            continue
        ids.add(record.id)
        survivors.append(record)
    duplicates = find_duplicates(survivors)
    loaded: list[Record] = []
    for i, record in enumerate(survivors):
        if i in duplicates:
            first = duplicates[i]
            report.reject(record, Rejected(
                "duplicate", f"the same space as {first.id} (row {first.row}), sent again"))
            continue
        record.cells = latlng_cells(*record.position())
        report.load(record)
        loaded.append(record)
    report.rejects.sort(key=lambda r: r["row"])
    frame = to_frame(loaded)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)
