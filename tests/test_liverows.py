"""A space written alone gets the row that a load gives it.

A write makes its one space's ``spaces`` row in plain Python
(:func:`geosearch.liverows.space_row`, :func:`geosearch.loadrows.space_values`); a load
makes every row column-wise (:func:`geosearch.loadrows.load_tables`). Both must give the
same columns and the same values, down to the type and the bytes: the feature, the words,
the ``tsvector`` text, the EWKB, the tile key and position. Checked over every space of
the committed feed and of the generated datasets, and over records that they do not hold
(numbers given as integers, nothing optional, words past the longest term, a point
outside the Web Mercator square).
"""

from __future__ import annotations

import pandas as pd
import pytest

from geosearch.features import serving_columns
from geosearch.geo import latlng_cells
from geosearch.ingest.pipeline import records_frame
from geosearch.ingest.records import Record
from geosearch.layout import LOAD_COLUMNS, SEARCH_WORDS
from geosearch.liverows import space_row
from geosearch.loadrows import DATASET_WIDE, load_tables
from geosearch.text import MAX_Q_CHARS

VERSION = "v-test"
_RESOLUTIONS = (7, 8, 9)


def _exactly(values: dict) -> dict:
    """Values compared with their types (20 and 20.0 differ, as -0.0 and 0.0 do)."""
    return {name: (type(value).__name__, repr(value)) for name, value in values.items()
            if name not in DATASET_WIDE}


def _loaded_rows(frame: pd.DataFrame) -> list[dict]:
    """Every row that a load of the frame COPYs into ``spaces``, in the frame's order."""
    tables, _ = load_tables(frame, VERSION, chunk_rows=max(len(frame), 1))
    return [row for table in tables["spaces"] for row in table.to_pylist()]


def _records(frame: pd.DataFrame) -> list[Record]:
    """The located records a frame of spaces was made of (its H3 cells made)."""
    plain = {name: frame[name].to_numpy(dtype=object, na_value=None).tolist()
             for name in frame.columns if name != "geometry"}
    records = []
    for i in range(len(frame)):
        value = {name: column[i] for name, column in plain.items()}
        capacity, price = value["capacity"], value["price_day"]
        records.append(Record(
            row=int(value["feed_row"]), raw={}, id=value["id"], name=value["name"],
            address=value["address"], city=value["city"], postcode=value["postcode"],
            country=value["country"], lat=float(value["lat"]), lon=float(value["lon"]),
            amenities=tuple(value["amenities"]),
            capacity=None if capacity is None else int(capacity),
            price_day=None if price is None else float(price), currency=value["currency"],
            status=value["status"], geocode_precision=value["geocode_precision"],
            cells={r: value[f"h3_r{r}"] for r in _RESOLUTIONS}))
    return records


def _mismatches(records: list[Record], loaded: list[dict]) -> list[tuple]:
    """(id, column, the write's value, the load's) wherever the two rows differ."""
    found = []
    for record, expected in zip(records, loaded, strict=True):
        row = space_row(record, VERSION)
        assert tuple(row.values) == LOAD_COLUMNS
        ours, theirs = _exactly(row.values), _exactly(expected)
        found += [(record.id, name, ours[name], theirs[name]) for name in ours
                  if ours[name] != theirs[name]]
    return found


@pytest.mark.parametrize("dataset", ["feed", "synthetic", "text"])
def test_every_space_gets_the_row_its_load_gave_it(dataset, request):
    """The committed feed; spaces at the antimeridian, near the poles and with exact ties;
    names that mix accents, scripts, digits and punctuation."""
    frame = request.getfixturevalue(f"{dataset}_result").frame
    assert _mismatches(_records(frame), _loaded_rows(frame)) == []


def test_a_written_space_has_the_words_a_load_counts_for_it(feed_result):
    """The words a write puts in the word plane are those the load's text search gives
    the space, and those of the active spaces are the load's ``search_words``."""
    frame = feed_result.frame
    records = _records(frame)
    tables, _ = load_tables(frame, VERSION, chunk_rows=len(frame))
    (counts,) = tables["search_words"]
    written = [space_row(record, VERSION).words for record in records]
    assert written == [list(w) for w in serving_columns(frame, [SEARCH_WORDS])[SEARCH_WORDS]]
    active = {w for record, words in zip(records, written, strict=True)
              if record.status == "active" for w in words}
    assert active == set(counts.column("word").to_pylist())


def _record(**fields) -> Record:
    values = {"row": 0, "raw": {}, "id": "sp-1", "name": "Café Zürich", "address": "",
              "city": "Zürich", "country": "CH", "lat": 47.3769, "lon": 8.5417, **fields}
    record = Record(**values)
    record.cells = latlng_cells(record.lat, record.lon)
    return record


@pytest.mark.parametrize("record", [
    _record(capacity=12, price_day=20, currency="CHF", amenities=("wifi", "coffee")),
    _record(postcode=None, capacity=None, price_day=None, currency=None, amenities=()),
    _record(name="Ärztehaus " + "x" * (MAX_Q_CHARS + 40), address="Zürichstraße 3 ZÜRICH",
            city="  zürich  ", postcode="8001", price_day=0, capacity=0),
    _record(name="Polar Desk", city="", lat=86.5, lon=-179.99, geocode_precision="city"),
    _record(name="Équateur", lat=0.0, lon=-0.0, amenities=("meeting_rooms",)),
], ids=["integers", "nothing-optional", "long-words", "outside-the-square", "origin"])
def test_a_record_alone_gets_the_row_of_its_one_row_frame(record):
    assert _mismatches([record], _loaded_rows(records_frame([record]))) == []
