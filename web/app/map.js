// The live map: the latest position of every device (GET /api/v1/positions/latest) as clustered
// markers (Leaflet + leaflet.markercluster), moved by live records with lat/lon, and the selected
// device's track (GET .../positions) growing as it moves. Tiles come from web.tile_url; without
// one the map draws a plain graticule, so it works offline and markers still sit where they are.
import {api, devicePath} from "./api.js";
import {el, formatTime, formatValue, isNumeric, parseTime} from "./util.js";

const kTrackRangeMs = 24 * 3600_000;
const kTrackLimit = 5000;
const kPollMs = 5000;
const kReconcileMs = 60_000;
// Graticule spacings (degrees), coarsest first.
const kGraticuleSteps = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001,
                         0.0005, 0.0002, 0.0001];

function graticule(map) {
  const layer = L.layerGroup();
  const draw = () => {
    layer.clearLayers();
    const bounds = map.getBounds();
    const south = Math.max(-85, bounds.getSouth());
    const north = Math.min(85, bounds.getNorth());
    const west = bounds.getWest();
    const east = bounds.getEast();
    const span = Math.max(north - south, (east - west) / 2);
    // The finest spacing that still gives at most 12 lines across.
    const step = kGraticuleSteps.findLast((s) => span / s <= 12) ?? kGraticuleSteps[0];
    const style = {color: "#9fb3c2", weight: 1, opacity: 0.8, interactive: false};
    const major = {...style, color: "#6f8799", weight: 1.5};
    const lines = [];
    for (let lat = Math.ceil(south / step) * step; lat <= north && lines.length < 400; lat += step) {
      const opts = Math.abs(lat) < step / 2 ? major : style;
      lines.push(L.polyline([[lat, west], [lat, east]], opts));
    }
    for (let lon = Math.ceil(west / step) * step; lon <= east && lines.length < 800; lon += step) {
      const opts = Math.abs(lon % 360) < step / 2 ? major : style;
      lines.push(L.polyline([[south, lon], [north, lon]], opts));
    }
    for (const line of lines) layer.addLayer(line);
  };
  map.on("moveend zoomend viewreset", draw);
  layer.on("add", draw);
  return layer;
}

function markerIcon(id, selected) {
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.dataset.device = id;
  return L.divIcon({className: `device-marker${selected ? " selected" : ""}`, html: dot,
                    iconSize: selected ? [18, 18] : [14, 14]});
}

export function mountMap(container, {live, settings, query}) {
  let selectedId = query.get("device") || null;
  let disposed = false;
  const positions = new Map();  // id → {lat, lon, ts, speed}
  const markers = new Map();    // id → L.Marker
  let track = [];               // [[lat, lon], ...] of the selected device, oldest first
  let trackLine = null;
  let fitted = false;

  const find = el("input", {id: "map-find", type: "search", list: "map-devices", autocomplete: "off",
                            placeholder: "device id"});
  const options = el("datalist", {id: "map-devices"});
  const count = el("p", {class: "muted", id: "map-count", role: "status"}, "Loading positions…");
  const selected = el("div", {id: "map-selected", class: "selected-panel", role: "status",
                              "aria-live": "polite"});
  const mapBox = el("div", {id: "map", class: "map", role: "region",
                            "aria-label": "Map of device positions"});
  const side = el("aside", {class: "map-side", "aria-labelledby": "map-title"},
      el("h1", {id: "map-title"}, "Map"),
      el("form", {class: "find", onsubmit: (e) => { e.preventDefault(); select(find.value.trim()); }},
         el("label", {for: "map-find"}, "Show device"), find, options,
         el("button", {type: "submit"}, "Show")),
      count, selected,
      settings.tile_url ? null
                        : el("p", {class: "muted small"}, "No map tiles configured " +
                                                           "(web.tile_url): a plain grid is drawn."));
  container.replaceChildren(el("section", {class: "map-page"}, side, mapBox));

  // markercluster needs a maxZoom even when no tile layer brings one.
  const map = L.map(mapBox, {worldCopyJump: true, minZoom: 1, maxZoom: 19, zoomSnap: 0.5});
  map.setView([20, 0], 2);
  if (settings.tile_url) {
    L.tileLayer(settings.tile_url, {maxZoom: 19, attribution: settings.tile_attribution || ""})
        .addTo(map);
  } else {
    mapBox.classList.add("no-tiles");
    graticule(map).addTo(map);
    map.attributionControl.addAttribution("no tiles (web.tile_url)");
  }
  L.control.scale().addTo(map);
  const cluster = L.markerClusterGroup({chunkedLoading: true, showCoverageOnHover: false,
                                        maxClusterRadius: 50});
  map.addLayer(cluster);

  function markerFor(id, p) {
    let marker = markers.get(id);
    if (marker) return marker;
    marker = L.marker([p.lat, p.lon], {icon: markerIcon(id, id === selectedId), title: id,
                                       alt: id, keyboard: true, riseOnHover: true});
    marker.bindTooltip(id);
    marker.on("click", () => select(id));
    markers.set(id, marker);
    // The selected device stays out of the clusters, always visible on top.
    if (id === selectedId) map.addLayer(marker); else cluster.addLayer(marker);
    options.append(el("option", {value: id}));
    return marker;
  }

  function move(id, p) {
    const marker = markers.get(id);
    if (!marker) {
      markerFor(id, p);
      return;
    }
    // A clustered marker has to leave its cluster to move (leaflet.markercluster's rule).
    if (id === selectedId) {
      marker.setLatLng([p.lat, p.lon]);
    } else {
      cluster.removeLayer(marker);
      marker.setLatLng([p.lat, p.lon]);
      cluster.addLayer(marker);
    }
  }

  function renderSelected() {
    if (!selectedId) {
      selected.replaceChildren(el("p", {class: "muted"}, "Select a marker to see its track."));
      delete selected.dataset.device;
      return;
    }
    const p = positions.get(selectedId);
    selected.dataset.device = selectedId;
    selected.dataset.points = String(track.length);
    const rows = p ? [["Latitude", formatValue(p.lat), "lat"], ["Longitude", formatValue(p.lon), "lon"],
                      ["Time", formatTime(p.ts), "time"],
                      ["Speed", p.speed === undefined ? "—" : `${formatValue(p.speed)} km/h`, "speed"],
                      ["Track points (24 h)", String(track.length), "points"]]
                   : [["Position", "none yet", "none"]];
    selected.replaceChildren(
        el("h2", {}, el("a", {href: `#/devices/${encodeURIComponent(selectedId)}`}, selectedId)),
        el("dl", {class: "facts"}, rows.flatMap(([k, v, f]) =>
            [el("dt", {}, k), el("dd", {"data-field": f}, v)])));
  }

  function drawTrack() {
    if (trackLine) trackLine.remove();
    trackLine = track.length ? L.polyline(track, {color: "#d1495b", weight: 3, opacity: 0.85})
                                   .addTo(map)
                             : null;
  }

  async function loadTrack(id, fit = true) {
    try {
      const body = await api(devicePath(id, "positions"), {
        query: {from: new Date(Date.now() - kTrackRangeMs).toISOString(), order: "desc",
                limit: kTrackLimit}});
      if (disposed || id !== selectedId) return;
      track = body.positions.map((p) => [p.lat, p.lon]).reverse();
      drawTrack();
      renderSelected();
      if (fit && track.length) map.fitBounds(L.latLngBounds(track).pad(0.3), {maxZoom: 15});
    } catch (e) {
      if (!disposed) selected.textContent = `Could not load the track of ${id}: ${e.message}`;
    }
  }

  function select(id) {
    if (!id) return;
    const previous = selectedId;
    selectedId = id;
    for (const other of [previous, id]) {
      const marker = other && markers.get(other);
      if (!marker) continue;
      cluster.removeLayer(marker);
      marker.remove();
      marker.setIcon(markerIcon(other, other === selectedId));
      if (other === selectedId) map.addLayer(marker); else cluster.addLayer(marker);
    }
    history.replaceState(null, "", `#/map?device=${encodeURIComponent(id)}`);
    track = [];
    drawTrack();
    renderSelected();
    loadTrack(id);
  }

  function take(list) {
    for (const p of list) {
      positions.set(p.device, {lat: p.lat, lon: p.lon, ts: parseTime(p.last_seen), speed: p.speed});
      move(p.device, positions.get(p.device));
    }
    count.textContent = `${positions.size} device${positions.size === 1 ? "" : "s"} with a position`;
    count.dataset.count = String(positions.size);
    if (!fitted && positions.size && !selectedId) {
      fitted = true;
      const bounds = L.latLngBounds([...positions.values()].map((p) => [p.lat, p.lon]));
      map.fitBounds(bounds.pad(0.2), {maxZoom: 13});
    }
    renderSelected();
  }

  async function reload() {
    try {
      // Paged (10,000 a page, the API's maximum) so any fleet size loads.
      const all = [];
      let cursor = null;
      do {
        const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
        const body = await api(`/api/v1/positions/latest?limit=10000${query}`);
        all.push(...body.positions);
        cursor = body.next_cursor;
      } while (cursor && !disposed);
      if (!disposed) take(all);
    } catch (e) {
      if (!disposed) count.textContent = `Could not load positions: ${e.message}`;
    }
  }

  const stopRecords = live.onRecords((records) => {
    const moved = [];
    for (const r of records) {
      const f = r.fields || {};
      if (!isNumeric(f.lat) || !isNumeric(f.lon)) continue;
      const ts = parseTime(r.ts);
      const p = {lat: f.lat, lon: f.lon, ts, speed: isNumeric(f.speed) ? f.speed : undefined};
      positions.set(r.device, p);
      moved.push(r.device);
      if (r.device === selectedId) track.push([p.lat, p.lon]);
    }
    if (!moved.length) return;
    for (const id of moved) move(id, positions.get(id));
    if (moved.includes(selectedId)) {
      if (trackLine) trackLine.setLatLngs(track); else drawTrack();
    }
    count.textContent = `${positions.size} device${positions.size === 1 ? "" : "s"} with a position`;
    count.dataset.count = String(positions.size);
    renderSelected();
  });
  live.subscribe({all: true, keys: ["lat", "lon", "speed"]});

  let lastReload = Date.now();
  const timer = setInterval(() => {
    const due = live.state === "open" ? kReconcileMs : kPollMs;
    if (Date.now() - lastReload < due) return;
    lastReload = Date.now();
    reload();
    if (selectedId && live.state !== "open") loadTrack(selectedId, false);
  }, kPollMs);

  renderSelected();
  reload();
  if (selectedId) loadTrack(selectedId);
  return () => {
    disposed = true;
    clearInterval(timer);
    stopRecords();
    map.remove();
    live.subscribe({});
  };
}
