"""A large feed made from the committed one, for load and ingest benchmarks at 1M rows.

Every row of ``data/feed/spaces.csv`` is repeated, dirty rows included (their defects
stay as they are), with a new id, a numbered name (so that copies are different spaces,
not duplicates) and, where the coordinates are plain numbers, a position moved by up to
~1 km. Writes CSV, or GeoParquet when the output ends in ``.parquet`` (coordinates as
numbers, in a point geometry; rows without usable coordinates have no geometry).

    python scripts/scale_feed.py --rows 1000000 --out var/feed-1m.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT / "data" / "feed" / "spaces.csv"
JITTER_DEG = 0.008


def scaled(rows: int, seed: int = 3) -> pd.DataFrame:
    """``rows`` feed rows (all columns as text) made from the committed feed."""
    base = pd.read_csv(FEED, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    copies = -(-rows // len(base))
    frame = pd.concat([base] * copies, ignore_index=True).iloc[:rows].copy()
    copy = np.repeat(np.arange(copies), len(base))[:rows]
    later = copy > 0
    suffix = pd.Series(copy.astype(str), index=frame.index)
    frame.loc[later, "id"] = frame.loc[later, "id"] + "-c" + suffix[later]
    frame.loc[later, "name"] = frame.loc[later, "name"] + " " + suffix[later]
    rng = np.random.default_rng(seed)
    for column in ("lat", "lon"):
        number = pd.to_numeric(frame[column], errors="coerce")
        plain = later & number.notna().to_numpy() & (number.abs() > 1).to_numpy()
        moved = number[plain] + rng.uniform(-JITTER_DEG, JITTER_DEG, int(plain.sum()))
        frame.loc[plain, column] = moved.round(6).astype(str)
    return frame


def write(frame: pd.DataFrame, out: Path) -> None:
    """CSV, or GeoParquet with numeric coordinates for a ``.parquet`` path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix != ".parquet":
        frame.to_csv(out, index=False)
        return
    import geopandas as gpd

    lat = pd.to_numeric(frame["lat"], errors="coerce")
    lon = pd.to_numeric(frame["lon"], errors="coerce")
    has = (lat.notna() & lon.notna()).to_numpy()
    geometry = gpd.GeoSeries.from_xy(lon.where(has), lat.where(has), crs="EPSG:4326")
    geometry[~has] = None
    props = frame.drop(columns=["lat", "lon"])
    for column in ("capacity", "price_day"):
        props[column] = pd.to_numeric(props[column], errors="coerce")
    gpd.GeoDataFrame(props, geometry=geometry).to_parquet(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write(scaled(args.rows), args.out)
    print(f"{args.rows} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
