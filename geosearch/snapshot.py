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

import geopandas as gpd
import pyarrow.parquet as pq

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
    """
    target = snapshot_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
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
    """Load a snapshot written by :func:`write_snapshot`."""
    return Snapshot(_read(gpd.read_parquet, path), read_meta(path))
