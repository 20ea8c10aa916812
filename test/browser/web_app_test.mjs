// The web app in a real browser (Debian's chromium via playwright-core) against a real
// `tern serve`: log in, a device published over MQTT appears in the list, its chart updates live
// while the page is open, a tracker sending OsmAnd positions moves on the map, alerts show their
// empty state, logout returns to the login page. Screenshots go to --artifacts.
import path from "node:path";
import {check, freePort, kTimeoutMs, launchBrowser, log, newPage, request, runCases, TernServer,
        waitUntil} from "./lib.mjs";

const kUser = "alice";
const kPassword = "alice-password-1";

// The live feed is in use when the server documents it; then the page must show it connected
// (records arrive over the WebSocket, not by polling).
async function liveFeedServed(server) {
  const doc = JSON.parse((await request(server.url("/api/v1/openapi.json"))).body);
  return Boolean(doc.paths["/api/v1/live"]);
}

async function osmand(port, id, lat, lon, speed) {
  const query = new URLSearchParams({id, lat: String(lat), lon: String(lon), speed: String(speed),
                                     timestamp: String(Math.floor(Date.now() / 1000))});
  const r = await request(`http://127.0.0.1:${port}/?${query}`);
  check(r.status === 200, `OsmAnd position for ${id}: status ${r.status} ${r.body}`);
}

async function logIn(page, server) {
  await page.goto(server.url("/"));
  await page.getByLabel("User name").fill(kUser);
  await page.getByLabel("Password").fill(kPassword);
  await page.getByRole("button", {name: "Log in"}).click();
  await page.locator("#device-list").waitFor();
}

async function webAppServedAtRoot(args) {
  const server = await new TernServer(args.tern, args.dir).start();
  const index = await request(server.url("/"));
  check(index.status === 200, `GET / without a token: ${index.status}`);
  check(index.headers["content-type"] === "text/html; charset=utf-8", "index content type");
  check(index.body.includes('src="/app/main.js"'), "index loads the app");
  check(/script-src 'self'/.test(index.headers["content-security-policy"] || ""), "CSP on /");
  for (const file of ["main.js", "leaflet.js", "leaflet.markercluster.js", "uPlot.iife.min.js"]) {
    const r = await request(server.url(`/app/${file}`));
    check(r.status === 200 && r.headers["content-type"].startsWith("text/javascript"),
          `/app/${file}: ${r.status} ${r.headers["content-type"]}`);
  }
  check((await request(server.url("/app/nope.js"))).status === 404, "unknown app file is 404");
  check((await request(server.url("/api/v1/web/config"))).status === 401, "web config needs a token");
  server.addUser(kUser, "viewer", kPassword);
  const config = await server.getJson("/api/v1/web/config", await server.token(kUser, kPassword));
  check(config.tile_url === "" && config.online_window_s === 300,
        `default web config: ${JSON.stringify(config)}`);
}

async function liveDeviceChartAndMap(args) {
  const osmandPort = await freePort();
  const server = await new TernServer(args.tern, args.dir, {
    TERN_TRACKERS_ENABLED: "osmand", TERN_TRACKERS_HOST: "127.0.0.1",
    TERN_TRACKERS_OSMAND_PORT: String(osmandPort)}).start();
  server.addUser(kUser, "operator", kPassword);
  const expectLive = await liveFeedServed(server);
  log(`live feed ${expectLive ? "served: the page must use it" : "not served yet: polling"}`);

  const browser = await launchBrowser(args["node-modules"]);
  const errors = [];
  try {
    const page = await newPage(browser, errors);
    const shot = (name) => page.screenshot({path: path.join(args.artifacts, `${name}.png`)});

    await page.goto(server.url("/"));
    await page.getByRole("heading", {name: "Tern"}).waitFor();
    await shot("01-login");
    // A wrong password is refused with a message, and the form stays.
    await page.getByLabel("User name").fill(kUser);
    await page.getByLabel("Password").fill("wrong-password");
    await page.getByRole("button", {name: "Log in"}).click();
    await page.getByText("Wrong user name or password.").waitFor();
    await logIn(page, server);
    if (expectLive) await page.locator('#live-status[data-state="open"]').waitFor();

    // A device that publishes while the list is open appears in it.
    server.publish("device/sensor-1", JSON.stringify({uuid: "sensor-1", value: 23, temp: 21.5}));
    const row = page.locator('.device-row[data-device="sensor-1"]');
    await row.waitFor();
    await waitUntil(async () => (await row.locator(".status-text").textContent()) === "online",
                    "sensor-1 to show online");
    await shot("02-device-list");

    // Keyboard: focus the list, Enter opens the active (only) device.
    await page.locator("#device-list").focus();
    await page.keyboard.press("Home");
    check(await page.locator("#device-list").getAttribute("aria-activedescendant") ===
          "device-option-0", "Home makes the first row active");
    await page.keyboard.press("Enter");
    await page.waitForURL(/#\/devices\/sensor-1$/);
    const chart = page.locator('figure.chart[data-key="value"]');
    await page.waitForFunction(() => {
      const f = document.querySelector('figure.chart[data-key="value"]');
      return f && Number(f.dataset.points) >= 1 && f.querySelector("canvas");
    }, null, {timeout: kTimeoutMs});
    check(await chart.locator(".latest").textContent() === "23", "latest value 23");
    const before = await chart.getAttribute("data-last");
    await page.locator("table.messages tbody tr").first().waitFor();

    // A new value while the page is open: the chart and the message table update by themselves.
    server.publish("device/sensor-1", JSON.stringify({uuid: "sensor-1", value: 99, temp: 22}));
    await waitUntil(async () => (await chart.locator(".latest").textContent()) === "99",
                    "the latest value to become 99");
    await waitUntil(async () => (await chart.getAttribute("data-last")) !== before,
                    `the chart's last point to change from ${before}`);
    await waitUntil(async () => (await page.locator("table.messages tbody tr").count()) === 2,
                    "two rows in the message table");
    check((await page.locator("table.messages tbody tr").first().textContent()).includes("value=99"),
          "the newest message first");
    // Other ranges load and draw too.
    await page.getByRole("radio", {name: "24 h"}).click();
    await page.waitForFunction(() => {
      const f = document.querySelector('figure.chart[data-key="value"]');
      return f && Number(f.dataset.points) >= 1;
    }, null, {timeout: kTimeoutMs});
    await page.getByRole("radio", {name: "1 h"}).click();
    await shot("03-device-page");

    // The map: a tracker sends a position, then moves; its marker and track follow.
    await osmand(osmandPort, "trk-1", 52.37, 4.89, 10);
    await page.goto(server.url("/#/map?device=trk-1"));
    const lat = page.locator('#map-selected [data-field="lat"]');
    await waitUntil(async () => (await lat.textContent().catch(() => "")) === "52.37",
                    "trk-1 at 52.37 on the map");
    const marker = page.locator('.device-marker.selected .dot[data-device="trk-1"]');
    await marker.waitFor();
    const box1 = await marker.boundingBox();
    await shot("04-map-first-position");
    await osmand(osmandPort, "trk-1", 52.3705, 4.8915, 12);
    await waitUntil(async () => (await lat.textContent()) === "52.3705", "trk-1 to move to 52.3705");
    await waitUntil(async () =>
        (await page.locator("#map-selected").getAttribute("data-points")) === "2",
        "a track of two points");
    await waitUntil(async () => {
      const box2 = await marker.boundingBox();
      return box2 && (Math.abs(box2.x - box1.x) > 2 || Math.abs(box2.y - box1.y) > 2);
    }, "the marker to move on screen");
    check(await page.locator(".leaflet-overlay-pane path").count() >= 1, "a track line");
    await shot("05-map-tracker-moved");

    await page.getByRole("link", {name: "Alerts"}).click();
    await page.getByText("Alerts come from rules", {exact: false}).waitFor();
    await shot("06-alerts");

    await page.getByRole("button", {name: "Log out"}).click();
    await page.getByLabel("Password").waitFor();
    check(errors.length === 0, `no page errors: ${errors.join("; ")}`);
  } catch (e) {
    await args.onFailure();
    throw e;
  } finally {
    await browser.close();
  }
}

// Access tokens that live 3 s: the app refreshes them before they expire (and the live feed,
// closed with 1008 when its token expires, reconnects with a fresh one), so a device that
// publishes well after the first token died still shows up without logging in again.
async function sessionOutlivesShortTokens(args) {
  const server = await new TernServer(args.tern, args.dir, {TERN_API_TOKEN_TTL: "3s"}).start();
  server.addUser(kUser, "viewer", kPassword);
  const expectLive = await liveFeedServed(server);
  const browser = await launchBrowser(args["node-modules"]);
  const errors = [];
  try {
    const page = await newPage(browser, errors);
    await logIn(page, server);
    const token = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("tern.session")).access);
    const first = await token();
    // Three different access tokens: two refreshes, well past the first one's expiry.
    const seen = new Set([first]);
    await waitUntil(async () => {
      seen.add(await token());
      return seen.size >= 3;
    }, "two token refreshes", kTimeoutMs, 200);
    if (expectLive) await page.locator('#live-status[data-state="open"]').waitFor();
    server.publish("device/late-1", JSON.stringify({value: 1}));
    await page.locator('.device-row[data-device="late-1"]').waitFor();
    check(await page.locator("#login-name").count() === 0, "still logged in");
    if (expectLive) {
      // The server re-checks a live socket's token every 15 s: the first one has expired by
      // then, so it closes the socket with 1008 (and logs why). The app refreshes its token and
      // opens the feed again.
      await waitUntil(async () => /live: closing .*expired/.test(server.stderrTail(400)),
                      "the server to close the live feed of an expired token", kTimeoutMs, 250);
      await page.locator('#live-status[data-state="open"]').waitFor();
      server.publish("device/after-1008", JSON.stringify({value: 2}));
      await page.locator('.device-row[data-device="after-1008"]').waitFor();
      check(await page.locator("#login-name").count() === 0, "still logged in after the 1008");
    }
    check(errors.length === 0, `no page errors: ${errors.join("; ")}`);
  } catch (e) {
    await args.onFailure();
    throw e;
  } finally {
    await browser.close();
  }
}

await runCases([webAppServedAtRoot, liveDeviceChartAndMap, sessionOutlivesShortTokens]);
