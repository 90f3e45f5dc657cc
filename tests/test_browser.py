"""The map page in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def server(app):
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
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


def test_radius_search_with_an_amenity_shows_the_apis_answer(page, client):
    page, problems = page
    page.check("input[name=amenity][value=wifi]")

    search(page, lat=52.52, lon=13.405, radius=8000)

    listed = page.eval_on_selector_all("#results li", "els => els.map(e => e.dataset.id)")
    answer = client.get("/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=8000&amenities=wifi"
                        ).get_json()
    assert listed == [f["id"] for f in answer["features"]] and listed
    assert page.locator(".leaflet-marker-icon").count() == len(listed)
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
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
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
