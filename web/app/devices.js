// The device list: every device (GET /api/v1/devices, all pages), searchable, with last seen and
// online/offline, updated from the live feed. Virtualised: only the rows in view (plus a few)
// exist in the DOM, so 10,000 devices scroll as fast as 10. Keyboard: arrows, Page Up/Down,
// Home/End move through the list, Enter opens the device; the list is an ARIA listbox whose
// active option is announced through aria-activedescendant.
import {api} from "./api.js";
import {ago, el, frameThrottle, parseTime} from "./util.js";

const kRowHeight = 40;  // px; keep in sync with .device-row in style.css
const kOverscan = 8;    // rows rendered above and below the visible ones
const kPageLimit = 10000;
const kPollMs = 5000;       // reload while the live feed is down
const kReconcileMs = 60000; // reload now and then even when it is up (names, tags, removals)

export async function loadAllDevices() {
  const all = [];
  let cursor;
  for (let page = 0; page < 1000; ++page) {  // bounded: 10 million devices
    const body = await api("/api/v1/devices", {query: {limit: kPageLimit, cursor}});
    all.push(...body.devices);
    if (!body.next_cursor) break;
    cursor = body.next_cursor;
  }
  return all;
}

export function mountDevices(container, {live, settings}) {
  const onlineWindowMs = (settings.online_window_s || 300) * 1000;
  const byId = new Map();  // id → {id, name, lastSeen (ms|null), messages}
  let shown = [];          // filtered and sorted
  let active = -1;         // index into shown
  let disposed = false;

  const search = el("input", {id: "device-search", type: "search", autocomplete: "off",
                              placeholder: "id or name", "aria-controls": "device-list"});
  const sort = el("select", {id: "device-sort"},
                  el("option", {value: "id"}, "Device id"),
                  el("option", {value: "-last_seen"}, "Last seen (newest first)"));
  const summary = el("p", {id: "device-count", class: "muted", role: "status"}, "Loading…");
  const spacer = el("div", {class: "device-spacer"});
  const list = el("div", {id: "device-list", class: "device-list", role: "listbox",
                          tabindex: "0", "aria-label": "Devices", "aria-describedby": "device-help"},
                  spacer);
  const page = el("section", {class: "page devices-page", "aria-labelledby": "devices-title"},
      el("div", {class: "toolbar"},
         el("h1", {id: "devices-title"}, "Devices"),
         el("label", {for: "device-search"}, "Search"), search,
         el("label", {for: "device-sort"}, "Sort by"), sort,
         el("span", {class: "legend muted"},
            `online = seen within ${Math.round(onlineWindowMs / 60000 * 10) / 10} min`)),
      summary,
      el("p", {id: "device-help", class: "sr-only"},
         "Use the arrow keys to move through the devices and Enter to open one."),
      el("div", {class: "device-head", "aria-hidden": "true"},
         el("span", {}, "Status"), el("span", {}, "Device"), el("span", {}, "Name"),
         el("span", {}, "Last seen"), el("span", {class: "num"}, "Messages")),
      list);
  container.replaceChildren(page);

  // Row elements are recycled: one per visible slot, whatever device it shows.
  const pool = [];
  function rowElement(slot) {
    while (pool.length <= slot) {
      const row = el("div", {class: "device-row", role: "option"},
                     el("span", {class: "status"}, el("span", {class: "dot", "aria-hidden": "true"}),
                        el("span", {class: "status-text"})),
                     el("span", {class: "id"}), el("span", {class: "name"}),
                     el("span", {class: "seen"}), el("span", {class: "num count"}));
      row.addEventListener("click", () => {
        setActive(Number(row.dataset.index), false);
        open();
      });
      pool.push(row);
      list.append(row);
    }
    return pool[slot];
  }

  function online(device, now) {
    return device.lastSeen !== null && now - device.lastSeen <= onlineWindowMs;
  }

  const renderRows = frameThrottle(() => {
    if (disposed) return;
    const now = Date.now();
    spacer.style.height = `${shown.length * kRowHeight}px`;
    const visible = Math.ceil((list.clientHeight || 600) / kRowHeight) + 2 * kOverscan;
    // Clamped: right after the list shrank, scrollTop may still point past its new end.
    const first = Math.max(0, Math.min(Math.floor(list.scrollTop / kRowHeight) - kOverscan,
                                       shown.length - visible));
    const last = Math.min(shown.length, first + visible);
    let slot = 0;
    for (let i = first; i < last; ++i, ++slot) {
      const device = shown[i];
      const row = rowElement(slot);
      const isOnline = online(device, now);
      row.hidden = false;
      row.id = `device-option-${i}`;
      row.dataset.index = String(i);
      row.dataset.device = device.id;
      row.style.transform = `translateY(${i * kRowHeight}px)`;
      row.setAttribute("aria-posinset", String(i + 1));
      row.setAttribute("aria-setsize", String(shown.length));
      row.setAttribute("aria-selected", i === active ? "true" : "false");
      row.classList.toggle("active", i === active);
      row.classList.toggle("online", isOnline);
      const status = device.lastSeen === null ? "never seen" : isOnline ? "online" : "offline";
      row.querySelector(".status-text").textContent = status;
      row.querySelector(".id").textContent = device.id;
      row.querySelector(".name").textContent = device.name || "";
      row.querySelector(".seen").textContent = ago(device.lastSeen, now);
      row.querySelector(".count").textContent = String(device.messages);
      row.setAttribute("aria-label", `${device.id}${device.name ? ` (${device.name})` : ""}, ` +
                                     `${status}, last seen ${ago(device.lastSeen, now)}`);
    }
    for (; slot < pool.length; ++slot) {
      pool[slot].hidden = true;
      pool[slot].removeAttribute("id");
    }
    if (active >= 0 && active < shown.length) {
      list.setAttribute("aria-activedescendant", `device-option-${active}`);
    } else {
      list.removeAttribute("aria-activedescendant");
    }
    let onlineCount = 0;
    for (const device of byId.values()) onlineCount += online(device, now) ? 1 : 0;
    const filtered = shown.length === byId.size ? "" : `, ${shown.length} shown`;
    summary.textContent = `${byId.size} device${byId.size === 1 ? "" : "s"}, ${onlineCount} online${filtered}`;
    summary.dataset.total = String(byId.size);
    summary.dataset.shown = String(shown.length);
  });

  function refilter() {
    const activeId = active >= 0 && shown[active] ? shown[active].id : null;
    const needle = search.value.trim().toLowerCase();
    shown = [...byId.values()].filter((d) => !needle || d.id.toLowerCase().includes(needle) ||
                                             (d.name && d.name.toLowerCase().includes(needle)));
    if (sort.value === "-last_seen") {
      shown.sort((a, b) => (b.lastSeen ?? -Infinity) - (a.lastSeen ?? -Infinity) ||
                           (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    } else {
      shown.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    active = activeId === null ? (shown.length ? 0 : -1)
                               : Math.max(0, shown.findIndex((d) => d.id === activeId));
    if (active >= shown.length) active = shown.length - 1;
    renderRows();
  }
  const refilterSoon = frameThrottle(refilter);

  function setActive(index, scroll = true) {
    if (!shown.length) return;
    active = Math.max(0, Math.min(shown.length - 1, index));
    if (scroll) {
      const top = active * kRowHeight;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + kRowHeight > list.scrollTop + list.clientHeight) {
        list.scrollTop = top + kRowHeight - list.clientHeight;
      }
    }
    renderRows();
  }

  function open() {
    if (active < 0 || !shown[active]) return;
    location.hash = `#/devices/${encodeURIComponent(shown[active].id)}`;
  }

  list.addEventListener("scroll", renderRows, {passive: true});
  list.addEventListener("keydown", (event) => {
    const pageRows = Math.max(1, Math.floor(list.clientHeight / kRowHeight) - 1);
    const moves = {ArrowDown: 1, ArrowUp: -1, PageDown: pageRows, PageUp: -pageRows};
    if (event.key in moves) {
      setActive((active < 0 ? 0 : active) + moves[event.key]);
    } else if (event.key === "Home") {
      setActive(0);
    } else if (event.key === "End") {
      setActive(shown.length - 1);
    } else if (event.key === "Enter" || event.key === " ") {
      open();
    } else {
      return;
    }
    event.preventDefault();
  });
  search.addEventListener("input", () => {
    list.scrollTop = 0;
    active = -1;  // the first match becomes active
    refilter();
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "Enter") {
      event.preventDefault();
      list.focus();
      if (active < 0) setActive(0);
    }
  });
  sort.addEventListener("change", refilter);
  const resize = new ResizeObserver(renderRows);
  resize.observe(list);

  function take(devices) {
    const seen = new Set();
    for (const d of devices) {
      seen.add(d.id);
      byId.set(d.id, {id: d.id, name: d.name || "", lastSeen: parseTime(d.last_seen),
                      messages: d.message_count || 0});
    }
    for (const id of [...byId.keys()]) if (!seen.has(id)) byId.delete(id);
    refilter();
  }

  async function reload() {
    try {
      take(await loadAllDevices());
    } catch (e) {
      if (!disposed) summary.textContent = `Could not load devices: ${e.message}`;
    }
  }

  // Live records: a device's last seen and count move, and new devices appear at once.
  const stopRecords = live.onRecords((records) => {
    let added = false;
    for (const r of records) {
      const ts = parseTime(r.ts);
      let device = byId.get(r.device);
      if (!device) {
        device = {id: r.device, name: "", lastSeen: null, messages: 0};
        byId.set(r.device, device);
        added = true;
      }
      if (ts !== null && (device.lastSeen === null || ts > device.lastSeen)) device.lastSeen = ts;
      device.messages += 1;
    }
    if (added || sort.value !== "id") refilterSoon();
    else renderRows();
  });
  live.subscribe({all: true});

  let lastReload = Date.now();
  const timer = setInterval(() => {
    const due = live.state === "open" ? kReconcileMs : kPollMs;
    if (Date.now() - lastReload >= due) {
      lastReload = Date.now();
      reload();
    } else {
      renderRows();  // "12 s ago" and online/offline move with the clock
    }
  }, kPollMs);

  reload();
  return () => {
    disposed = true;
    clearInterval(timer);
    stopRecords();
    resize.disconnect();
    live.subscribe({});
  };
}
