// The operator web app: hash routes (#/devices, #/devices/<id>, #/map, #/alerts) over one page
// served by tern serve at /. Data comes from the token-protected API and the live feed.
import {api, currentUser, loggedIn, logout, onSessionChange} from "./api.js";
import {mountAlerts} from "./alerts.js";
import {mountDevice} from "./device.js";
import {mountDevices} from "./devices.js";
import {LiveFeed} from "./live.js";
import {mountLogin} from "./login.js";
import {mountMap} from "./map.js";

const view = document.getElementById("view");
const header = document.getElementById("top");
const liveStatus = document.getElementById("live-status");
const live = new LiveFeed();
let unmount = () => {};
let settings = null;  // GET /api/v1/web/config, once per login
let renderCount = 0;  // a render that awaited is dropped when a newer one started meanwhile

const kStateText = {off: "Live: off", connecting: "Live: connecting…", open: "Live",
                    closed: "Live: reconnecting (polling)"};
live.onState((state) => {
  liveStatus.dataset.state = state;
  liveStatus.textContent = kStateText[state] || state;
});

function route() {
  const hash = location.hash.replace(/^#/, "") || "/devices";
  const [path, queryText] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return {parts, query: new URLSearchParams(queryText || "")};
}

async function loadSettings() {
  if (settings) return settings;
  try {
    settings = await api("/api/v1/web/config");
  } catch {
    settings = {tile_url: "", tile_attribution: "", online_window_s: 300};
  }
  return settings;
}

async function render() {
  const generation = ++renderCount;
  unmount();
  unmount = () => {};
  if (!loggedIn()) {
    header.hidden = true;
    live.stop();
    unmount = mountLogin(view, {onLoggedIn: () => render()});
    return;
  }
  header.hidden = false;
  const user = currentUser();
  document.getElementById("user-name").textContent = user ? `${user.name} (${user.role})` : "";
  live.start();
  const {parts, query} = route();
  const name = parts[0] || "devices";
  for (const link of header.querySelectorAll("nav a")) {
    if (link.dataset.view === name) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  const config = await loadSettings();
  if (generation !== renderCount || !loggedIn()) return;
  const context = {live, settings: config, query};
  if (name === "devices" && parts.length >= 2) {
    unmount = mountDevice(view, parts[1], context);
  } else if (name === "map") {
    unmount = mountMap(view, context);
  } else if (name === "alerts") {
    unmount = mountAlerts(view, context);
  } else {
    unmount = mountDevices(view, context);
  }
}

window.addEventListener("hashchange", () => {
  render();
  view.focus({preventScroll: true});
});
document.getElementById("logout").addEventListener("click", async () => {
  await logout();
});
// Logged out (the button, or a refresh the server refused): back to the login page.
onSessionChange((session) => {
  if (!session) {
    settings = null;
    render();
  }
});

render();
