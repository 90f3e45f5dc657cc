"""The map page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from geosearch.testing.served import served

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(app):
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def open_map(browser, url: str, bypass_csp: bool = True):
    """A desktop-sized page on the map, ready; and the console errors it logs.
    ``bypass_csp``: lift the page's Content-Security-Policy, which forbids the string
    evaluation Playwright's ``wait_for_function`` uses (one test keeps it: below)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  bypass_csp=bypass_csp)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return context, page, problems


@pytest.fixture
def page(browser, server):
    context, page, problems = open_map(browser, server)
    yield page, problems
    context.close()


def search(page, **fields):
    before = page.get_attribute("body", "data-search-done")
    for key, value in fields.items():
        page.fill(f"#{key}", str(value))
    page.click("#go")
    page.wait_for_function(
        f"document.body.dataset.searchDone && document.body.dataset.searchDone !== {before!r}"
        if before else "document.body.dataset.searchDone", timeout=20_000)


def test_the_page_works_under_its_own_content_security_policy(browser, server):
    context, page, problems = open_map(browser, server, bypass_csp=False)
    try:
        policy = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        page.fill("#lat", "52.52")
        page.fill("#lon", "13.405")
        page.fill("#radius", "8000")
        page.click("#go")
        page.wait_for_selector("body[data-search-done]", timeout=20_000)
        assert page.locator("#results li").count() > 0
        assert problems == []  # a blocked script, style or image is a console error
    finally:
        context.close()


def test_radius_search_with_an_amenity_shows_the_apis_answer(page, client):
    page, problems = page
    page.check("input[name=amenity][value=wifi]")

    search(page, lat=52.52, lon=13.405, radius=8000)

    listed = page.eval_on_selector_all("#results li", "els => els.map(e => e.dataset.id)")
    answer = client.get("/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=8000&amenities=wifi"
                        ).get_json()
    assert listed == [f["id"] for f in answer["features"]] and listed
    assert int(page.get_attribute("body", "data-result-markers")) == len(listed)
    first = page.inner_text("#results li:first-child .distance")
    assert first.endswith(("m", "km"))
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "map-radius-wifi.png"))
    assert problems == []


def test_load_more_follows_the_cursor(page, client):
    page, problems = page
    search(page, lat=51.5074, lon=-0.1278, radius=100000)
    assert page.locator("#results li").count() == 50
    page.click("#more")
    page.wait_for_function("document.querySelectorAll('#results li').length > 50")
    listed = page.eval_on_selector_all("#results li", "els => els.map(e => e.dataset.id)")
    assert len(listed) == len(set(listed))
    assert problems == []


def test_nearest_mode_and_clear_errors(page):
    page, problems = page
    page.check("input[name=mode][value=nearest]")
    page.click("#go")
    assert "Pick a point" in page.inner_text("#status")

    search(page, lat=-33.87, lon=151.21, k=5)

    assert page.locator("#results li").count() == 5
    page.check("input[name=mode][value=radius]")
    search(page, lat=0.0, lon=-160.0, radius=1000)
    assert "No space matches" in page.inner_text("#status")
    assert problems == []


def test_phone_sized_screen_and_keyboard(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  bypass_csp=True)  # wait_for_function evaluates text
    page = context.new_page()
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#lat", "48.8566")
    page.fill("#lon", "2.3522")
    page.focus("#radius")
    page.keyboard.press("Enter")
    page.wait_for_function("document.body.dataset.searchDone")
    assert page.locator("#results li").count() > 0
    box = page.locator(".panel").bounding_box()
    assert box["width"] <= 390
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "map-phone.png"), full_page=True)
    context.close()


def test_search_this_area_drawn_polygon_and_coverage_layer(page):
    page, problems = page
    page.fill("#lat", "52.52")
    page.fill("#lon", "13.405")
    page.dispatch_event("#lon", "change")
    page.check("input[name=mode][value=bbox]")
    search(page)
    in_view = page.locator("#results li").count()
    assert in_view > 0

    page.check("input[name=mode][value=polygon]")
    box = page.locator("#map").bounding_box()
    for dx, dy in ((0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7)):
        page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
    before = page.get_attribute("body", "data-search-done")
    page.click("#draw-finish")
    page.wait_for_function(f"document.body.dataset.searchDone !== {before!r}")
    drawn = page.locator("#results li").count()
    assert 0 < drawn <= in_view

    page.check("#coverage")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Coverage')")
    assert page.locator("path.leaflet-interactive").count() > 10
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "map-coverage.png"))
    assert problems == []


# -- every space on the map, from the vector tile data, at a million spaces -----------------

MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_server():
    """``make run``'s app over a million spaces around the market cities."""
    from geosearch.api import create_app
    from geosearch.backends.memory import MemoryBackend
    from geosearch.settings import Settings
    from geosearch.testing.synthetic import city_scatter

    backend = MemoryBackend.from_frame(city_scatter(MILLION, seed=5), "million")
    app = create_app(Settings(snapshot="unused", heavy_rate_limit=""), backend)
    with served(app) as url:
        yield url


def view(page, lat: float, lon: float, zoom: int) -> dict[str, int]:
    """Move the map and wait for its tiles: the clusters, points and spaces they show."""
    before = page.get_attribute("body", "data-tiles-loaded")
    page.evaluate(f"geosearchMap.setView([{lat}, {lon}], {zoom}, {{animate: false}})")
    page.wait_for_function(f"document.body.dataset.tilesLoaded !== {json.dumps(before)} && "
                           f"document.body.dataset.tileZoom === '{zoom}'", timeout=30_000)
    return {k: int(page.get_attribute("body", f"data-tile-{k}"))
            for k in ("clusters", "points", "spaces")}


@pytest.mark.xdist_group("cpu-heavy")  # see tests/test_faults.py
def test_the_map_shows_a_million_spaces_from_the_world_to_a_street(browser, million_server):
    context, page, problems = open_map(browser, million_server)

    world = view(page, 20, 0, 1)  # the whole square in view: every space, in clusters
    assert world["spaces"] == MILLION
    assert world["clusters"] > 0 and world["clusters"] <= 4 * 64
    city = view(page, 48.8566, 2.3522, 9)
    assert city["clusters"] > 0 and city["spaces"] < world["spaces"]
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "map-million-clusters.png"))

    zoom_before = page.evaluate("geosearchMap.getZoom()")
    page.locator(".space-cluster").first.dispatch_event("click")  # one may cover another
    page.wait_for_function(f"+document.body.dataset.tileZoom > {zoom_before}",
                           timeout=30_000)  # zoomed in, and the new level's tiles are drawn

    street = view(page, 48.8566, 2.3522, 16)
    assert street["clusters"] == 0 and street["points"] > 0
    assert street["points"] == street["spaces"]
    page.screenshot(path=str(OUTPUT / "map-million-street.png"))
    assert problems == []
    context.close()


def test_a_drawn_area_across_the_antimeridian_is_split_in_two(page):
    page, problems = page
    area = page.evaluate(
        "geosearchDrawnArea([{lat: -10, lng: 170}, {lat: -10, lng: 190}, "
        "{lat: -25, lng: 190}, {lat: -25, lng: 170}])")
    assert area["type"] == "MultiPolygon"
    west, east = (polygon[0] for polygon in area["coordinates"])
    assert {lon for lon, _ in west} == {170, 180}
    assert {lon for lon, _ in east} == {-180, -170}
    same = page.evaluate(  # drawn on the world copy to the west: the same area
        "geosearchDrawnArea([{lat: -10, lng: -190}, {lat: -10, lng: -170}, "
        "{lat: -25, lng: -170}, {lat: -25, lng: -190}])")
    assert same == area
    plain = page.evaluate("geosearchDrawnArea([{lat: 1, lng: 1}, {lat: 1, lng: 2}, "
                          "{lat: 2, lng: 2}])")
    assert plain == {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 1]]]}
    assert problems == []
