// A device's page: its summary, live charts (uPlot) of its numeric keys over 1 h / 24 h / 7 d
// (GET .../series/{key}, bucket averages; live records update the last bucket in place), and its
// messages, newest first, paged with the API's cursor.
import {api, devicePath} from "./api.js";
import {ago, el, formatTime, formatValue, isNumeric, parseTime} from "./util.js";

// Range → bucket: a few hundred points each.
const kRanges = [
  {id: "1h", label: "1 h", ms: 3600_000, bucket: "10s", bucketMs: 10_000},
  {id: "24h", label: "24 h", ms: 86_400_000, bucket: "5m", bucketMs: 300_000},
  {id: "7d", label: "7 d", ms: 7 * 86_400_000, bucket: "1h", bucketMs: 3_600_000},
];
const kMaxCharts = 12;
const kPageSize = 50;
const kPollMs = 5000;
const kSlideMs = 30_000;  // move the window to "now" and reload this often
// Position fields are for the map; a chart of them says little.
const kNotCharted = new Set(["lat", "lon", "course"]);

export function mountDevice(container, deviceId, {live, settings, query}) {
  let range = kRanges.find((r) => r.id === query.get("range")) || kRanges[0];
  const onlineWindowMs = (settings.online_window_s || 300) * 1000;
  const charts = new Map();  // key → {figure, latest, plot, xs, ys, counts}
  let device = null;
  let disposed = false;
  let cursors = [null];  // the cursor of each message page seen; the last is the current page
  let nextCursor = null;
  let messageRows = [];  // on the first page: the newest messages, newest first

  const title = el("h1", {id: "device-title"}, deviceId);
  const facts = el("dl", {class: "facts"});
  const rangeButtons = kRanges.map((r) =>
      el("button", {type: "button", role: "radio", "data-range": r.id,
                    "aria-checked": r === range ? "true" : "false",
                    onclick: () => setRange(r)}, r.label));
  const rangeGroup = el("div", {class: "ranges", role: "radiogroup", "aria-label": "Time range"},
                        rangeButtons);
  rangeGroup.addEventListener("keydown", (event) => {
    const step = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[event.key];
    if (!step) return;
    event.preventDefault();
    const next = kRanges[(kRanges.indexOf(range) + step + kRanges.length) % kRanges.length];
    setRange(next);
    rangeButtons[kRanges.indexOf(next)].focus();
  });
  const chartArea = el("div", {class: "charts", id: "charts"});
  const noCharts = el("p", {class: "muted"}, "No numeric values yet.");
  const tbody = el("tbody");
  const newer = el("button", {type: "button", disabled: true, onclick: () => pageMessages(-1)},
                   "Newer");
  const older = el("button", {type: "button", disabled: true, onclick: () => pageMessages(1)},
                   "Older");
  const pageInfo = el("span", {class: "muted", role: "status"});
  const error = el("p", {class: "error", role: "alert"});

  container.replaceChildren(el("section", {class: "page device-page",
                                           "aria-labelledby": "device-title"},
      el("nav", {class: "crumbs", "aria-label": "Breadcrumb"},
         el("a", {href: "#/devices"}, "Devices"), " / ", deviceId),
      el("div", {class: "device-header"}, title,
         el("a", {href: `#/map?device=${encodeURIComponent(deviceId)}`}, "Show on map")),
      facts, error,
      el("div", {class: "toolbar"}, el("h2", {}, "Charts"), rangeGroup),
      noCharts, chartArea,
      el("div", {class: "toolbar"}, el("h2", {id: "messages-title"}, "Messages"),
         newer, older, pageInfo),
      el("div", {class: "table-wrap"},
         el("table", {class: "messages", "aria-labelledby": "messages-title"},
            el("thead", {}, el("tr", {},
               el("th", {scope: "col"}, "Time"), el("th", {scope: "col"}, "Device time"),
               el("th", {scope: "col"}, "Node"), el("th", {scope: "col"}, "Topic"),
               el("th", {scope: "col"}, "Fields"))),
            tbody))));

  function renderFacts() {
    if (!device) return;
    const lastSeen = parseTime(device.last_seen);
    const isOnline = lastSeen !== null && Date.now() - lastSeen <= onlineWindowMs;
    title.textContent = device.name ? `${deviceId} — ${device.name}` : deviceId;
    const tags = Object.entries(device.tags || {}).map(([k, v]) => `${k}:${v}`).join(", ");
    const items = [
      ["Status", lastSeen === null ? "never seen" : isOnline ? "online" : "offline"],
      ["Last seen", lastSeen === null ? "never" : `${formatTime(lastSeen)} (${ago(lastSeen)})`],
      ["Messages", String(device.message_count)],
      ["Type", device.type || "—"],
      ["Tags", tags || "—"],
    ];
    facts.replaceChildren(...items.flatMap(([k, v]) =>
        [el("dt", {}, k), el("dd", {"data-fact": k.toLowerCase().replace(" ", "-")}, v)]));
  }

  function chartFor(key) {
    if (charts.has(key)) return charts.get(key);
    if (charts.size >= kMaxCharts) return null;
    const latest = el("span", {class: "latest", "aria-live": "off"}, "");
    const plotBox = el("div", {class: "plot", "aria-hidden": "true"});
    const figure = el("figure", {class: "chart", "data-key": key, "data-points": "0"},
                      el("figcaption", {}, el("span", {class: "key"}, key), " ", latest),
                      plotBox);
    chartArea.append(figure);
    noCharts.hidden = true;
    const chart = {key, figure, latest, plotBox, plot: null, xs: [], ys: [], counts: []};
    charts.set(key, chart);
    loadSeries(chart);
    return chart;
  }

  function draw(chart) {
    const data = [chart.xs.map((x) => x / 1000), chart.ys];
    const width = Math.max(300, chart.plotBox.clientWidth || 600);
    if (!chart.plot) {
      chart.plot = new uPlot({
        width, height: 180,
        scales: {x: {time: true, range: () => [(Date.now() - range.ms) / 1000, Date.now() / 1000]}},
        series: [{}, {label: chart.key, stroke: "#1f7a8c", fill: "rgba(31,122,140,0.08)",
                      width: 1.5, points: {show: chart.xs.length < 60}}],
        axes: [{}, {size: 60}],
        legend: {show: false},
      }, data, chart.plotBox);
    } else {
      chart.plot.setData(data);
    }
    chart.figure.dataset.points = String(chart.xs.length);
    const last = chart.ys.length ? chart.ys[chart.ys.length - 1] : null;
    chart.figure.dataset.last = last === null ? "" : String(last);
    chart.figure.setAttribute("aria-label", `${chart.key}: ${chart.xs.length} points over the ` +
                                            `last ${range.label}` +
                                            (last === null ? "" : `, latest average ${formatValue(last)}`));
  }

  async function loadSeries(chart) {
    const to = Date.now() + 60_000;
    try {
      const body = await api(devicePath(deviceId, "series", chart.key), {
        query: {from: new Date(Date.now() - range.ms).toISOString(),
                to: new Date(to).toISOString(), bucket: range.bucket, agg: "avg"}});
      if (disposed) return;
      chart.xs = [];
      chart.ys = [];
      chart.counts = [];
      for (const p of body.points) {
        if (p.value === null) continue;
        chart.xs.push(parseTime(p.ts));
        chart.ys.push(p.value);
        chart.counts.push(p.count);
      }
      draw(chart);
    } catch (e) {
      if (!disposed) error.textContent = `Could not load ${chart.key}: ${e.message}`;
    }
  }

  // A live value joins its bucket: the average moves, or a new bucket starts.
  function addPoint(chart, ts, value) {
    const bucket = Math.floor(ts / range.bucketMs) * range.bucketMs;
    const n = chart.xs.length;
    if (n && chart.xs[n - 1] === bucket) {
      const count = chart.counts[n - 1] || 1;
      chart.ys[n - 1] = (chart.ys[n - 1] * count + value) / (count + 1);
      chart.counts[n - 1] = count + 1;
    } else if (!n || bucket > chart.xs[n - 1]) {
      chart.xs.push(bucket);
      chart.ys.push(value);
      chart.counts.push(1);
    } else {
      return;  // older than what is drawn: the next reload has it
    }
    draw(chart);
  }

  function messageRow(m) {
    const ts = parseTime(m.ts);
    const fields = Object.entries(m.fields || {}).map(([k, v]) => `${k}=${formatValue(v)}`);
    return el("tr", {},
              el("td", {}, el("time", {datetime: m.ts}, formatTime(ts))),
              el("td", {}, m.device_ts ? formatTime(parseTime(m.device_ts)) : ""),
              el("td", {}, m.node || ""), el("td", {}, m.topic || ""),
              el("td", {class: "fields"}, fields.join(", ")));
  }

  function renderMessages(list) {
    tbody.replaceChildren(...list.map(messageRow));
    if (!list.length) {
      tbody.append(el("tr", {}, el("td", {colspan: "5", class: "muted"}, "No messages.")));
    }
    newer.disabled = cursors.length <= 1;
    older.disabled = !nextCursor;
    pageInfo.textContent = `page ${cursors.length}, ${list.length} messages`;
  }

  async function loadMessages() {
    try {
      const body = await api(devicePath(deviceId, "messages"), {
        query: {order: "desc", limit: kPageSize, cursor: cursors[cursors.length - 1] || undefined}});
      if (disposed) return;
      nextCursor = body.next_cursor || null;
      messageRows = body.messages || [];
      renderMessages(messageRows);
    } catch (e) {
      if (!disposed) error.textContent = `Could not load messages: ${e.message}`;
    }
  }

  function pageMessages(step) {
    if (step > 0 && nextCursor) cursors.push(nextCursor);
    if (step < 0 && cursors.length > 1) cursors.pop();
    loadMessages();
  }

  async function loadDevice() {
    try {
      device = await api(devicePath(deviceId));
      if (disposed) return;
      error.textContent = "";
      renderFacts();
      for (const [key, value] of Object.entries(device.latest || {})) {
        if (isNumeric(value) && !kNotCharted.has(key)) {
          const chart = chartFor(key);
          if (chart) chart.latest.textContent = formatValue(value);
        }
      }
    } catch (e) {
      if (!disposed) {
        error.textContent = e.status === 404 ? `No device ${deviceId}.` : e.message;
      }
    }
  }

  function setRange(next) {
    range = next;
    for (const b of rangeButtons) {
      b.setAttribute("aria-checked", b.dataset.range === range.id ? "true" : "false");
    }
    for (const chart of charts.values()) loadSeries(chart);
  }

  function reloadAll() {
    loadDevice();
    for (const chart of charts.values()) loadSeries(chart);
    if (cursors.length === 1) loadMessages();
  }

  const stopRecords = live.onRecords((records) => {
    let changed = false;
    for (const r of records) {
      if (r.device !== deviceId) continue;
      changed = true;
      const ts = parseTime(r.ts) ?? Date.now();
      if (device) {
        device.last_seen = r.ts;
        device.message_count += 1;
      }
      for (const [key, value] of Object.entries(r.fields || {})) {
        if (!isNumeric(value) || kNotCharted.has(key)) continue;
        const chart = chartFor(key);
        if (!chart) continue;
        chart.latest.textContent = formatValue(value);
        addPoint(chart, ts, value);
      }
      if (cursors.length === 1) {
        messageRows = [r, ...messageRows].slice(0, kPageSize);
        renderMessages(messageRows);
      }
    }
    if (changed) renderFacts();
  });
  live.subscribe({devices: [deviceId]});

  let lastSlide = Date.now();
  const timer = setInterval(() => {
    if (live.state !== "open" || Date.now() - lastSlide >= kSlideMs) {
      lastSlide = Date.now();
      reloadAll();
    } else {
      renderFacts();
    }
  }, kPollMs);

  loadDevice();
  loadMessages();
  return () => {
    disposed = true;
    clearInterval(timer);
    stopRecords();
    for (const chart of charts.values()) chart.plot?.destroy();
    live.subscribe({});
  };
}
