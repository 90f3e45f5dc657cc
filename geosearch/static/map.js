// The geosearch map page: every space at every zoom (clusters with counts from the vector
// tile data, points from zoom 12), an origin, search by radius, nearest, map area or a
// drawn polygon, with amenity filters; results as clustered markers and as a list;
// coverage hexes.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const api = new URL("v1/", document.baseURI);
  const state = { origin: null, next: null, request: null, drawn: [], markers: [] };

  const map = L.map("map", { worldCopyJump: true, keyboard: true, maxZoom: 19 }).setView([48.5, 10], 4);
  window.geosearchMap = map; // for automation (tests/test_browser.py)
  const results = L.markerClusterGroup({ disableClusteringAtZoom: 17, chunkedLoading: true,
                                         spiderfyOnMaxZoom: true }).addTo(map);
  const drawing = L.layerGroup().addTo(map);
  const hexes = L.geoJSON(null, {
    style: (f) => ({ weight: 0.5, color: "#495057", fillOpacity: 0.45,
                     fillColor: f.properties.covered ? "#2f9e44" : "#ff8787" }),
  });
  let originMarker = null;
  let circle = null;

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const first = (body.errors || [])[0];
      const detail = first ? `${first.param}: ${first.message}` : (body.detail || response.statusText);
      throw new Error(detail);
    }
    return body;
  }

  async function loadConfig() {
    const config = await getJSON("map/config.json");
    if (config.tile_url) {
      L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "" }).addTo(map);
    } else {
      const outlines = await getJSON("map/countries.geojson");
      L.geoJSON(outlines, { style: { color: "#868e96", weight: 0.6, fillColor: "#f8f9fa", fillOpacity: 1 },
                            interactive: false }).addTo(map);
    }
  }

  async function loadAmenities() {
    const body = await getJSON(new URL("amenities", api));
    $("amenities").replaceChildren(...body.amenities.map((a) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = a.name;
      box.name = "amenity";
      label.append(box, ` ${a.label} (${a.count})`);
      return label;
    }));
  }

  function mode() {
    return document.querySelector("input[name=mode]:checked").value;
  }

  function showModeFields() {
    $("radius-field").hidden = mode() !== "radius";
    $("k-field").hidden = mode() !== "nearest";
    $("draw-field").hidden = mode() !== "polygon";
  }

  function setOrigin(lat, lon) {
    lon = ((lon + 540) % 360) - 180;
    state.origin = { lat, lon };
    $("lat").value = lat.toFixed(5);
    $("lon").value = lon.toFixed(5);
    if (originMarker) originMarker.setLatLng([lat, lon]);
    else originMarker = L.circleMarker([lat, lon], { radius: 7, color: "#1864ab", fillOpacity: 1 })
      .addTo(map).bindTooltip("Search origin");
  }

  function filters() {
    const params = new URLSearchParams();
    const ticked = [...document.querySelectorAll("input[name=amenity]:checked")].map((b) => b.value);
    if (ticked.length) params.set("amenities", ticked.join(","));
    const text = $("q").value.trim();
    if (text) params.set("q", text);
    return params;
  }

  // -- every space, from the tiles (GET v1/tiles/{z}/{x}/{y}.json) ------------------------
  map.createPane("spaces").style.zIndex = 450;
  const dots = L.canvas({ pane: "spaces", padding: 0.2 });
  const POINT_ZOOM = 12;

  function abbreviate(n) {
    return n >= 10000 ? `${Math.round(n / 1000)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n);
  }

  function spaceFeature(f, shift) {
    const [lon, lat] = f.geometry.coordinates;
    const at = [lat, lon + shift];
    const p = f.properties;
    if (p.count) {
      const size = 20 + Math.min(12, 2 * Math.log10(p.count)); // cells are 32 px
      return L.marker(at, {
        pane: "spaces", keyboard: false, title: `${p.count} spaces`, count: p.count,
        icon: L.divIcon({ className: "space-cluster", iconSize: [size, size],
                          html: `<span>${abbreviate(p.count)}</span>` }),
      }).on("click", () => map.setView(at, Math.min(map.getZoom() + 2, POINT_ZOOM)));
    }
    const amenities = p.amenities ? p.amenities.split(",").join(", ") : "no listed amenities";
    return L.circleMarker(at, { renderer: dots, radius: 5, weight: 1, color: "#fff",
                                fillColor: "#5f3dc4", fillOpacity: 0.9 })
      .bindTooltip(escapeHtml(p.name))
      .bindPopup(`<strong>${escapeHtml(p.name)}</strong><br>${escapeHtml(amenities)}`);
  }

  const SpacesLayer = L.GridLayer.extend({
    initialize(options) {
      L.GridLayer.prototype.initialize.call(this, options);
      this.groups = new Map();
      this.on("tileunload", (e) => this.drop(this._tileCoordsToKey(e.coords)));
    },
    drop(key) {
      const group = this.groups.get(key);
      if (group) { group.remove(); this.groups.delete(key); }
    },
    createTile(coords, done) {
      const tile = document.createElement("div");
      const n = 2 ** coords.z;
      const x = ((coords.x % n) + n) % n;
      const key = this._tileCoordsToKey(coords);
      if (coords.y < 0 || coords.y >= n) { setTimeout(() => done(null, tile)); return tile; }
      const url = new URL(`tiles/${coords.z}/${x}/${coords.y}.json?${filters()}`, api);
      getJSON(url).then((body) => {
        if (!this._tiles[key]) return done(null, tile); // scrolled away meanwhile
        const shift = ((coords.x - x) / n) * 360; // a copy of the world beside this one
        this.drop(key);
        const group = L.layerGroup(body.features.map((f) => spaceFeature(f, shift))).addTo(map);
        group.wrapped = `${coords.z}/${x}/${coords.y}`;
        group.zoom = coords.z;
        this.groups.set(key, group);
        done(null, tile);
      }).catch((error) => { status(`Spaces could not load: ${error.message}`, true); done(error, tile); });
      return tile;
    },
    counts() { // over the tiles shown, each tile of the world once (not its copies)
      let clusters = 0, spaces = 0, points = 0;
      const seen = new Set();
      for (const group of this.groups.values()) {
        if (seen.has(group.wrapped)) continue;
        seen.add(group.wrapped);
        group.eachLayer((m) => {
          if (m instanceof L.CircleMarker) { points += 1; spaces += 1; }
          else { clusters += 1; spaces += m.options.count; }
        });
      }
      return { clusters, points, spaces };
    },
  });
  const spaces = new SpacesLayer({ tileSize: 256, updateWhenZooming: false, keepBuffer: 1 });
  spaces.on("load", () => {
    // The level in view is complete: markers kept from other zoom levels go.
    const zoom = Math.round(map.getZoom());
    for (const [key, group] of [...spaces.groups]) if (group.zoom !== zoom) spaces.drop(key);
    const c = spaces.counts();
    Object.assign(document.body.dataset, { tileClusters: c.clusters, tilePoints: c.points,
                                           tileSpaces: c.spaces, tileZoom: zoom,
                                           tilesLoaded: Date.now() });
  });

  function viewportBbox() {
    const b = map.getBounds();
    const width = b.getEast() - b.getWest();
    const wrap = (x) => ((x + 540) % 360) - 180;
    const south = Math.max(-90, b.getSouth()), north = Math.min(90, b.getNorth());
    if (width >= 360) return [-180, south, 180, north];
    // minlon > maxlon when the view crosses the antimeridian (RFC 7946 §5.2)
    return [wrap(b.getWest()), south, wrap(b.getEast()), north].map((v) => +v.toFixed(6));
  }

  function buildRequest() {
    const params = filters();
    const m = mode();
    const lat = parseFloat($("lat").value), lon = parseFloat($("lon").value);
    const hasOrigin = Number.isFinite(lat) && Number.isFinite(lon);
    if ((m === "radius" || m === "nearest") && !hasOrigin) {
      throw new Error("Pick a point first: click the map or type a latitude and longitude.");
    }
    if (hasOrigin) { params.set("lat", lat); params.set("lon", lon); }
    if (m === "radius") {
      params.set("radius_m", $("radius").value);
      return { url: new URL("spaces/radius?" + params, api) };
    }
    if (m === "nearest") {
      params.set("k", $("k").value);
      return { url: new URL("spaces/nearest?" + params, api) };
    }
    if (m === "bbox") {
      params.set("bbox", viewportBbox().join(","));
      return { url: new URL("spaces/bbox?" + params, api) };
    }
    if (state.drawn.length < 3) throw new Error("Draw an area of at least three corners first.");
    return { url: new URL("spaces/polygon?" + params, api),
             body: JSON.stringify(drawnArea(state.drawn)) };
  }

  // -- a drawn area, split at the antimeridian -----------------------------------------
  // The API's longitudes are in [-180, 180]: an area drawn across ±180° (longitudes past
  // 180 on the map's world copies) is cut along the meridian into two polygons, the part
  // beyond shifted by 360°, and sent as a MultiPolygon.
  function unwrapped(points) {
    const ring = [[points[0].lng, points[0].lat]];
    for (const p of points.slice(1)) {
      let lng = p.lng;
      const previous = ring[ring.length - 1][0];
      while (lng - previous > 180) lng -= 360;
      while (lng - previous < -180) lng += 360;
      ring.push([lng, p.lat]);
    }
    const west = Math.min(...ring.map((c) => c[0]));
    const turns = Math.floor((west + 180) / 360);
    return ring.map(([lng, lat]) => [lng - 360 * turns, lat]);
  }

  function clipAt(ring, meridian, keepWest) {
    // Sutherland–Hodgman against one half-plane; edges are straight in lon/lat.
    const inside = (c) => (keepWest ? c[0] <= meridian : c[0] >= meridian);
    const out = [];
    ring.forEach((current, i) => {
      const previous = ring[(i + ring.length - 1) % ring.length];
      const cross = () => {
        const t = (meridian - previous[0]) / (current[0] - previous[0]);
        return [meridian, previous[1] + t * (current[1] - previous[1])];
      };
      if (inside(current)) {
        if (!inside(previous)) out.push(cross());
        out.push(current);
      } else if (inside(previous)) {
        out.push(cross());
      }
    });
    return out;
  }

  function closed(ring) {
    return [...ring, ring[0]].map(([lng, lat]) => [+lng.toFixed(7), +lat.toFixed(7)]);
  }

  function drawnArea(points) {
    const ring = unwrapped(points);
    const east = Math.max(...ring.map((c) => c[0]));
    if (east <= 180) return { type: "Polygon", coordinates: [closed(ring)] };
    if (east - Math.min(...ring.map((c) => c[0])) >= 360) {
      throw new Error("The drawn area is wider than the world: draw a smaller one.");
    }
    const west = clipAt(ring, 180, true);
    const beyond = clipAt(ring, 180, false).map(([lng, lat]) => [lng - 360, lat]);
    return { type: "MultiPolygon",
             coordinates: [west, beyond].filter((r) => r.length >= 3).map((r) => [closed(r)]) };
  }
  window.geosearchDrawnArea = drawnArea; // for automation (tests/test_browser.py)

  async function fetchPage(request, cursor) {
    const url = new URL(request.url);
    if (cursor) url.searchParams.set("cursor", cursor);
    const options = request.body
      ? { method: "POST", headers: { "Content-Type": "application/geo+json" }, body: request.body }
      : {};
    return getJSON(url, options);
  }

  function formatDistance(m) {
    return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 2 : 1)} km`;
  }

  function addResults(features) {
    for (const f of features) {
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties;
      const marker = L.marker([lat, lon], { title: p.name, keyboard: true })
        .bindPopup(`<strong>${escapeHtml(p.name)}</strong><br>${escapeHtml(p.address)}, ${escapeHtml(p.city)}`);
      marker.featureId = f.id;
      results.addLayer(marker);
      state.markers.push(marker);
      const item = document.createElement("li");
      item.tabIndex = 0;
      item.dataset.id = f.id;
      const distance = p.distance_m !== undefined
        ? `<span class="distance">${formatDistance(p.distance_m)}</span> · ` : "";
      item.innerHTML = `<div>${escapeHtml(p.name)}</div><div class="meta">${distance}` +
        `${escapeHtml(p.city)}, ${p.country} · ${p.amenities.length} amenities</div>`;
      const open = () => results.zoomToShowLayer(marker, () => marker.openPopup());
      item.addEventListener("click", open);
      item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
      $("results").append(item);
    }
  }

  function escapeHtml(text) {
    const div = document.createElement("div");
    div.textContent = text == null ? "" : String(text);
    return div.innerHTML;
  }

  function clearResults() {
    results.clearLayers();
    state.markers = [];
    $("results").replaceChildren();
    if (circle) { circle.remove(); circle = null; }
  }

  async function search(event) {
    if (event) event.preventDefault();
    let request;
    try {
      request = buildRequest();
    } catch (error) {
      status(error.message, true);
      return;
    }
    state.request = request;
    clearResults();
    status("Searching…");
    $("go").disabled = true;
    try {
      const body = await fetchPage(request, null);
      addResults(body.features);
      state.next = body.next || null;
      $("more").hidden = !state.next;
      if (mode() === "radius") {
        circle = L.circle([state.origin ? state.origin.lat : +$("lat").value, +$("lon").value],
                          { radius: +$("radius").value, weight: 1, fill: false }).addTo(map);
      }
      document.body.dataset.resultMarkers = String(results.getLayers().length);
      document.body.dataset.searchDone = String(Date.now());
      status(body.features.length ? `${body.features.length}${state.next ? "+" : ""} spaces found.`
                                  : "No space matches: widen the radius or drop a filter.");
      if (body.features.length && mode() !== "bbox") {
        map.fitBounds(L.featureGroup(state.markers).getBounds().pad(0.2), { maxZoom: 15 });
      }
    } catch (error) {
      status(error.message, true);
    } finally {
      $("go").disabled = false;
    }
  }

  async function more() {
    if (!state.next) return;
    try {
      const body = await fetchPage(state.request, state.next);
      addResults(body.features);
      document.body.dataset.resultMarkers = String(results.getLayers().length);
      state.next = body.next || null;
      $("more").hidden = !state.next;
      status(`${state.markers.length}${state.next ? "+" : ""} spaces found.`);
    } catch (error) {
      status(error.message, true);
    }
  }

  async function toggleCoverage() {
    if (!$("coverage").checked) { hexes.remove(); return; }
    const lat = parseFloat($("lat").value), lon = parseFloat($("lon").value);
    const near = Number.isFinite(lat)
      ? await getJSON(new URL(`spaces/nearest?lat=${lat}&lon=${lon}&k=1`, api)) : { features: [] };
    const country = near.features.length ? near.features[0].properties.country : null;
    if (!country) { status("Pick a point to show the coverage of its country.", true); return; }
    try {
      const body = await getJSON(new URL(`coverage/hexes?country=${country}&res=7`, api));
      hexes.clearLayers().addData(body).addTo(map);
      status(`Coverage of ${country}: green cells have a space within walking distance.`);
    } catch (error) {
      status(error.message, true);
    }
  }

  map.on("click", (e) => {
    if (mode() === "polygon") {
      state.drawn.push(e.latlng);
      drawing.clearLayers();
      L.polygon(state.drawn, { color: "#e8590c" }).addTo(drawing);
    } else {
      setOrigin(e.latlng.lat, e.latlng.lng);
    }
  });
  $("search").addEventListener("submit", search);
  $("more").addEventListener("click", more);
  $("coverage").addEventListener("change", toggleCoverage);
  $("all-spaces").addEventListener("change", () => {
    if ($("all-spaces").checked) spaces.addTo(map);
    else { spaces.remove(); for (const key of [...spaces.groups.keys()]) spaces.drop(key); }
  });
  $("amenities").addEventListener("change", () => spaces.redraw());
  $("q").addEventListener("change", () => spaces.redraw()); // the map shows what matches
  $("draw-finish").addEventListener("click", () => search());
  $("draw-clear").addEventListener("click", () => { state.drawn = []; drawing.clearLayers(); });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", showModeFields);
  }
  $("locate").addEventListener("click", () => {
    if (!navigator.geolocation) { status("This browser cannot share its location.", true); return; }
    navigator.geolocation.getCurrentPosition(
      (pos) => { setOrigin(pos.coords.latitude, pos.coords.longitude); map.setView([pos.coords.latitude, pos.coords.longitude], 12); },
      () => status("Your location is not available: click the map instead.", true));
  });
  for (const id of ["lat", "lon"]) {
    $(id).addEventListener("change", () => {
      const lat = parseFloat($("lat").value), lon = parseFloat($("lon").value);
      if (Number.isFinite(lat) && Number.isFinite(lon)) setOrigin(lat, lon);
    });
  }

  showModeFields();
  Promise.all([loadConfig(), loadAmenities()])
    .then(() => { spaces.addTo(map); document.body.dataset.ready = "true"; })
    .catch((error) => status(`The map could not load: ${error.message}`, true));
})();
