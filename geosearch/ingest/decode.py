"""Decode a feed file into text records: CSV (UTF-8, BOM, cp1252), GeoJSON, GeoParquet.

Every text field is repaired for mojibake ("ZÃ¼rich" -> "Zürich") and put in Unicode
NFC; a field that changed is recorded as a repair.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import ftfy
import ftfy.bad_codecs  # registers the sloppy-windows-1252 codec
import numpy as np

from geosearch.ingest.records import Record

FIELDS = ("id", "name", "address", "city", "postcode", "country", "lat", "lon", "amenities",
          "capacity", "price_day", "currency", "status")
# Fields that a typed feed may give as numbers; those are read as numbers, never as text.
NUMERIC_FIELDS = frozenset({"lat", "lon", "capacity", "price_day"})


class FeedError(Exception):
    """The feed file as a whole cannot be read (not a row-level problem)."""


def decode_bytes(data: bytes) -> str:
    """Text of a CSV file: UTF-8 (a BOM is dropped), else cp1252.

    >>> decode_bytes("Zürich".encode("cp1252"))
    'Zürich'
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


@lru_cache(maxsize=1 << 16)
def fix_mojibake(value: str) -> str:
    """Undo UTF-8 text that was read as cp1252 (once or more); other text is unchanged.

    ftfy's heuristics come first; a short string they leave alone is fixed when its
    cp1252 bytes form strictly valid UTF-8, which ordinary non-ASCII text practically
    never does. ASCII text cannot be mojibake and is returned at once.

    >>> fix_mojibake("GrudziÄ…dz"), fix_mojibake("Grudziądz")
    ('Grudziądz', 'Grudziądz')
    """
    if value.isascii():
        return value
    fixed = ftfy.fix_encoding(value)
    while not fixed.isascii():
        try:
            again = fixed.encode("sloppy-windows-1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            break
        if _has_control(again):
            break
        fixed = again
    return fixed


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text)


# ASCII control characters that cleaning drops (every one but the tab).
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def clean_text(value: str) -> str:
    """Mojibake repaired, NFC, control characters dropped, outer spaces trimmed.

    Plain ASCII text (most of a feed) only needs trimming and takes a fast path.

    >>> clean_text("ZÃ¼rich "), clean_text(" Berlin\\x00")
    ('Zürich', 'Berlin')
    """
    if value.isascii() and not _ASCII_CONTROL.search(value):
        return value.strip()
    return _clean_unicode(value)


@lru_cache(maxsize=1 << 16)
def _clean_unicode(value: str) -> str:
    text = value
    for _ in range(4):  # until nothing changes: the result is stable under cleaning
        fixed = fix_mojibake(text)
        fixed = "".join(ch for ch in fixed if ch in "\t" or unicodedata.category(ch)[0] != "C")
        fixed = unicodedata.normalize("NFC", fixed).strip()
        if fixed == text:
            break
        text = fixed
    return text


def _as_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list | tuple | np.ndarray):
        return ";".join(str(v) for v in value)
    return str(value)


def _as_number(value: object) -> float | None:
    """A value a typed feed gave as a number (not text, not a boolean), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    return float(value)


def _record(row: int, fields: dict[str, object]) -> Record:
    raw: dict[str, str] = {}
    record = Record(row=row, raw=raw)
    for key in FIELDS:
        value = fields.get(key)
        number = _as_number(value) if key in NUMERIC_FIELDS else None
        if number is not None:
            if not math.isnan(number):
                record.numbers[key] = number
            raw[key] = "" if math.isnan(number) else repr(number)  # shown in reports only
            continue
        text = _as_text(value)
        cleaned = clean_text(text)
        if fix_mojibake(text) != text:
            record.repair("mojibake", f"{key}: {text.strip()!r} -> {cleaned!r}")
        raw[key] = cleaned
    return record


def _csv_rows(path: Path) -> Iterator[dict[str, object]]:
    text = decode_bytes(path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = {"id", "lat", "lon"} - set(header)
    if missing:
        raise FeedError(f"{path.name}: the CSV header lacks {', '.join(sorted(missing))}")
    reader.fieldnames = header
    yield from reader


def _geojson_rows(path: Path) -> Iterator[dict[str, object]]:
    try:
        doc = json.loads(decode_bytes(path.read_bytes()))
    except json.JSONDecodeError as exc:
        raise FeedError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise FeedError(f"{path.name}: expected a GeoJSON FeatureCollection")
    for feature in doc.get("features", []):
        props = dict(feature.get("properties") or {}) if isinstance(feature, dict) else {}
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if isinstance(geometry, dict) and geometry.get("type") == "Point":
            coords = geometry.get("coordinates") or []
            if len(coords) >= 2:
                props["lon"], props["lat"] = coords[0], coords[1]
        if isinstance(feature, dict) and "id" not in props and feature.get("id") is not None:
            props["id"] = feature["id"]
        yield props


def _parquet_rows(path: Path) -> Iterator[dict[str, object]]:
    import geopandas as gpd

    try:
        frame = gpd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise FeedError(f"{path.name}: not a readable GeoParquet file ({exc})") from None
    geom_name = frame.geometry.name
    for rec in frame.to_dict("records"):
        geom = rec.pop(geom_name, None)
        if geom is not None and not geom.is_empty and geom.geom_type == "Point":
            rec["lon"], rec["lat"] = geom.x, geom.y
        yield rec


def read_feed(path: str | Path) -> list[Record]:
    """All rows of a feed file as records numbered from 1 (the first data row).

    The format follows the file's suffix: ``.csv``, ``.geojson``/``.json`` or
    ``.parquet``/``.geoparquet``. Raises :class:`FeedError` when the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise FeedError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        rows = _geojson_rows(path)
    elif suffix in (".parquet", ".geoparquet"):
        rows = _parquet_rows(path)
    else:
        rows = _csv_rows(path)
    return [_record(n, fields) for n, fields in enumerate(rows, start=1)]
