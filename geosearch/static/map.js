// The geosearch map page: pick an origin, search by radius, nearest, map area or a drawn
// polygon, with amenity filters; results as markers and as a list; coverage hexes.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const api = new URL("v1/", document.baseURI);
  const state = { origin: null, next: null, request: null, drawn: [], markers: [] };

  const map = L.map("map", { worldCopyJump: true, keyboard: true }).setView([48.5, 10], 4);
  const results = L.layerGroup().addTo(map);
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
    return params;
  }

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
    const ring = state.drawn.map((p) => [((p.lng + 540) % 360) - 180, p.lat]);
    ring.push(ring[0]);
    return { url: new URL("spaces/polygon?" + params, api),
             body: JSON.stringify({ type: "Polygon", coordinates: [ring] }) };
  }

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
      const open = () => { map.setView([lat, lon], Math.max(map.getZoom(), 14)); marker.openPopup(); };
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
    .then(() => { document.body.dataset.ready = "true"; })
    .catch((error) => status(`The map could not load: ${error.message}`, true));
})();
