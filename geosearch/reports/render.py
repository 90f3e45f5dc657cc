"""Write the coverage report: per country a CSV, GeoJSON, a PNG map and an HTML page;
an index.html with the summary of every country. Works offline: no tiles, no scripts."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import h3
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import shapely
from matplotlib.collections import PolyCollection

from geosearch.geo import cell_geojson, cell_rings
from geosearch.reference import countries
from geosearch.reports.coverage import Coverage

CITY_COLUMNS = ["city", "population", "spaces", "spaces_per_100k", "cells", "covered_share",
                "covered_share_population_weighted", "median_nearest_m", "p90_nearest_m"]
COUNTRY_COLUMNS = ["country", "name", "spaces", "spaces_in_cities", "spaces_outside_cities",
                   "cities", "cities_with_spaces", "cities_without_spaces",
                   "population_covered_share"]
STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
         "table{border-collapse:collapse;font-size:.9rem}"
         "th,td{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:right}"
         "th:first-child,td:first-child{text-align:left}img{max-width:100%;height:auto}"
         ".thin{background:#fff0f0}")


def _cell(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.1%}" if abs(value) <= 1 and value != int(value) else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def html_table(frame: pd.DataFrame, columns: list[str], link: str | None = None) -> str:
    """An HTML table of ``columns``; ``link`` names a column whose value links to a page."""
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    rows = []
    for record in frame[columns].to_dict(orient="records"):
        cells = []
        for c in columns:
            text = _cell(record[c])
            if c == link:
                text = f'<a href="{html.escape(str(record[c]))}/index.html">{text}</a>'
            cells.append(f"<td>{text}</td>")
        thin = ' class="thin"' if record.get("spaces") == 0 else ""
        rows.append(f"<tr{thin}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<style>{STYLE}</style><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _view(lons: pd.Series, lats: pd.Series, pad: float) -> shapely.Polygon:
    dx = max(pad, (lons.max() - lons.min()) * 0.08)
    dy = max(pad, (lats.max() - lats.min()) * 0.08)
    return shapely.box(lons.min() - dx, lats.min() - dy, lons.max() + dx, lats.max() + dy)


def _draw(ax, cov: Coverage, country: str, view: shapely.Polygon, cells: pd.DataFrame,
          rings: dict[str, list], spaces: pd.DataFrame, dot: float, title: str) -> None:
    """One panel: the outline clipped to ``view``, the cells (their ``rings`` by h3),
    the spaces."""
    outline = countries().geometry(country)
    if outline is not None:
        for part in shapely.get_parts(outline.intersection(view)):
            if part.geom_type == "Polygon":
                ax.fill(*part.exterior.xy, color="#f1f3f5", edgecolor="#868e96", linewidth=0.6)
    polys, colours = [], []
    for h, covered in zip(cells["h3"].tolist(), cells["covered"].tolist(), strict=True):
        for ring in rings[h]:
            polys.append(ring)
            colours.append("#2f9e44" if covered else "#ffa8a8")
    if polys:
        ax.add_collection(PolyCollection(polys, facecolors=colours, edgecolors="white",
                                         linewidths=0.2, alpha=0.9))
    ax.scatter(spaces["lon"], spaces["lat"], s=dot, c="#1c1c1c", zorder=3)
    minx, miny, maxx, maxy = view.bounds
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set_aspect(1 / max(0.1, math.cos(math.radians((miny + maxy) / 2))))
    ax.set_title(title, fontsize=10)


def draw_map(cov: Coverage, country: str, path: Path) -> None:
    """PNG: the country with its city cells shaded by coverage and its spaces as points,
    beside a close-up of its largest city."""
    cells = cov.cells[cov.cells["country"] == country]
    spaces = cov.spaces[(cov.spaces["country"] == country) & cov.spaces["counted"]]
    rings = {h: cell_rings(h) for h in cells["h3"].tolist()}
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 7), dpi=100)
    outline = countries().geometry(country)
    if not cells.empty:
        view = _view(pd.concat([cells["lon"], spaces["lon"]]),
                     pd.concat([cells["lat"], spaces["lat"]]), 0.5)
    elif outline is not None:
        view = shapely.box(*outline.bounds)
    else:
        view = shapely.box(-180, -90, 180, 90)
    _draw(left, cov, country, view, cells, rings, spaces, 2,
          f"{country}: city cells covered (green) or not (red); spaces (dots)")
    table = cov.city_table(country)
    if table.empty:
        right.set_axis_off()
    else:
        city = table.iloc[0]
        zoom = shapely.Point(city["lon"], city["lat"]).buffer(
            city["radius_m"] * 1.3 / 111_000 / max(0.2, math.cos(math.radians(city["lat"]))))
        zoom = shapely.box(*zoom.bounds)
        _draw(right, cov, country, zoom, cells[cells["city_index"] == city.name], rings,
              spaces, 8,
              f"{city['city']}: {int(city['spaces'])} spaces, "
              f"{city['covered_share']:.0%} of cells within {cov.options.walk_m:,.0f} m")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _features(frame: pd.DataFrame, geometry) -> dict:
    features = []
    for record in frame.to_dict(orient="records"):
        props = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        features.append({"type": "Feature", "geometry": geometry(record),
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_country(cov: Coverage, country: str, name: str, out: Path) -> None:
    """The files of one country under ``out/<country>/``."""
    folder = out / country
    folder.mkdir(parents=True, exist_ok=True)
    table = cov.city_table(country)
    table.to_csv(folder / "cities.csv", index=False)
    cities = _features(table, lambda r: {"type": "Point", "coordinates": [r["lon"], r["lat"]]})
    (folder / "cities.geojson").write_text(json.dumps(cities, ensure_ascii=False))
    cells = cov.cells[cov.cells["country"] == country].drop(columns=["weight"])
    cells = cells.assign(city=cov.cities["name"].loc[cells["city_index"]].to_numpy())
    geo = _features(cells.drop(columns=["city_index"]),
                    lambda r: cell_geojson(r["h3"]))
    (folder / "cells.geojson").write_text(json.dumps(geo, ensure_ascii=False))
    draw_map(cov, country, folder / "map.png")
    res = cov.options.res
    body = (f"<p><a href='../index.html'>All countries</a> · "
            f"<a href='cities.csv'>cities.csv</a> · <a href='cities.geojson'>cities.geojson</a>"
            f" · <a href='cells.geojson'>cells.geojson</a></p>"
            f"<p>Cells: H3 resolution {res} ({h3.average_hexagon_area(res, unit='km^2'):.2f} "
            f"km²) over each city's extent; covered when a space is within "
            f"{cov.options.walk_m:,.0f} m of the cell's centre.</p>"
            f"<img src='map.png' alt='Coverage map of {html.escape(name)}'>"
            f"{html_table(table, CITY_COLUMNS)}")
    (folder / "index.html").write_text(page(f"Coverage: {name}", body))


def write_report(cov: Coverage, out: Path, only: list[str] | None = None) -> list[str]:
    """Write the whole report (or the countries in ``only``); returns the countries."""
    out.mkdir(parents=True, exist_ok=True)
    summary = cov.country_table()
    if only:
        summary = summary[summary["country"].isin(only)]
    summary.to_csv(out / "countries.csv", index=False)
    for row in summary.itertuples():
        write_country(cov, row.country, row.name, out)
    amenities = ", ".join(sorted(a.value for a in cov.options.amenities)) or "any"
    body = (f"<p>Spaces with amenities: {html.escape(amenities)}. Cities of at least "
            f"{cov.options.min_population:,} inhabitants. Rows in red have no space at all."
            f"</p>{html_table(summary, COUNTRY_COLUMNS, link='country')}")
    (out / "index.html").write_text(page("geosearch coverage by country", body))
    return list(summary["country"])
