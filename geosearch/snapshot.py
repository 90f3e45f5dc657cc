"""The embedded snapshot: one GeoParquet file of every loaded space, written atomically.

The file carries geosearch's own metadata (dataset version, when and from what it was
built) in its Parquet schema, beside GeoParquet's ``geo`` key.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosearch.features import serving_columns
from geosearch.layout import DERIVED_COLUMNS, SNAPSHOT_COLUMNS

SNAPSHOT_FILE = "spaces.parquet"
SNAPSHOT_MODE = 0o644
_META_KEY = b"geosearch"


class SnapshotError(Exception):
    """A snapshot cannot be found or read."""


def snapshot_file(path: str | Path) -> Path:
    """The snapshot file for ``path``: the path itself when it names a ``.parquet`` file,
    else ``spaces.parquet`` inside that folder."""
    path = Path(path)
    return path if path.suffix in (".parquet", ".geoparquet") else path / SNAPSHOT_FILE


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot: the spaces and their metadata."""

    frame: gpd.GeoDataFrame
    meta: dict

    @property
    def version(self) -> str:
        """The dataset version: a digest of the loaded spaces."""
        return str(self.meta.get("dataset_version", "unknown"))


def write_snapshot(frame: gpd.GeoDataFrame, path: str | Path, meta: dict) -> Path:
    """Write ``frame`` to the snapshot at ``path`` atomically; return the file written.

    The data goes to a temporary file in the same folder, is flushed to disk, and then
    replaces the old file in one rename: a crash at any point leaves the old snapshot.
    Rows are stored active first, each part by id: a backend then serves the leading
    rows as they are, with no sort and no copy.
    """
    target = snapshot_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    order = np.lexsort((frame["id"].to_numpy(dtype=str), frame["status"].ne("active")))
    frame = frame.iloc[order]
    buffer = io.BytesIO()
    frame.assign(**serving_columns(frame)).to_parquet(buffer, index=False)
    buffer.seek(0)
    table = pq.read_table(buffer)
    metadata = dict(table.schema.metadata or {})
    metadata[_META_KEY] = json.dumps(meta).encode()
    table = table.replace_schema_metadata(metadata)
    fd, tmp = tempfile.mkstemp(prefix=".spaces-", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file private (0600); a snapshot is a data file that a service
        # running as another user must be able to read.
        os.fchmod(fd, SNAPSHOT_MODE)
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read(reader, path: str | Path):
    file = snapshot_file(path)
    try:
        return reader(file)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{file}: cannot read the snapshot ({exc})") from None


def read_meta(path: str | Path) -> dict:
    """Only the metadata of a snapshot (cheap: reads the footer)."""
    raw = (_read(pq.read_schema, path).metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}


def read_snapshot(path: str | Path) -> Snapshot:
    """Load a snapshot written by :func:`write_snapshot` (the spaces' own columns)."""
    frame = _read(gpd.read_parquet, path)
    return Snapshot(frame.drop(columns=[c for c in DERIVED_COLUMNS if c in frame]), read_meta(path))


def table_from_frame(frame: pd.DataFrame) -> pa.Table:
    """The Arrow table a backend serves from: the frame's columns and the derived serving
    columns (feature bytes, amenity mask, city key)."""
    dropped = [c for c in ("geometry", *DERIVED_COLUMNS) if c in frame]
    plain = pd.DataFrame(frame.drop(columns=dropped))
    return pa.Table.from_pandas(plain.assign(**serving_columns(plain)), preserve_index=False)


def serving_table(source: str | Path | BinaryIO) -> tuple[pa.Table, dict]:
    """A snapshot as an Arrow table with its serving columns, and its metadata, all read
    from one open file: ``source`` opened for reading, or opened here from its path (a
    rename over the path meanwhile cannot mix two files).

    Columnar all the way: the columns come from Parquet straight into Arrow buffers.
    A snapshot written before the serving columns existed gets them computed here.
    """
    if isinstance(source, str | Path):
        source = snapshot_file(source)
        name = str(source)
    else:
        name = str(getattr(source, "name", "the snapshot"))
    try:
        parquet = pq.ParquetFile(source)
        raw = (parquet.schema_arrow.metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
        names = set(parquet.schema_arrow.names)
        if set(DERIVED_COLUMNS) <= names:
            return parquet.read(columns=list(SNAPSHOT_COLUMNS)), meta
        table = parquet.read()
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{name}: cannot read the snapshot ({exc})") from None
    return table_from_frame(table.drop_columns(
        [c for c in ("geometry",) if c in names]).to_pandas()), meta
