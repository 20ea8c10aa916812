// 10,000 devices in the web app's device list: the DOM holds only a window of rows however far
// the list scrolls, the keyboard reaches the last device, and search narrows the list. The
// devices are real: 10,000 MQTT messages over one connection to a real `tern serve`.
import path from "node:path";
import {check, kTimeoutMs, launchBrowser, log, newPage, runCases, TernServer,
        waitUntil} from "./lib.mjs";

const kDevices = 10_000;
const kMaxRows = 80;  // rows in the DOM: a screenful plus overscan, far below 10,000

async function tenThousandDevicesStayVirtualised(args) {
  // Messages on "bulk" name their device in the payload, so one mosquitto_pub -l feeds them all.
  const server = await new TernServer(args.tern, args.dir, {
    TERN_INGEST_ROUTES: "device/+=topic:2;bulk=json:uuid"}).start();
  server.addUser("ops", "viewer", "ops-password-1");
  const lines = [];
  for (let i = 0; i < kDevices; ++i) {
    lines.push(JSON.stringify({uuid: `dev-${String(i).padStart(5, "0")}`, value: i}));
  }
  server.publishLines("bulk", lines);
  const token = await server.token("ops", "ops-password-1");
  await waitUntil(async () => {
    const body = await server.getJson("/api/v1/devices?limit=10000", token);
    return body.devices.length === kDevices;
  }, `${kDevices} devices in the API`, 120_000, 500);
  log(`${kDevices} devices stored`);

  const browser = await launchBrowser(args["node-modules"]);
  const errors = [];
  try {
    const page = await newPage(browser, errors);
    await page.goto(server.url("/"));
    await page.getByLabel("User name").fill("ops");
    await page.getByLabel("Password").fill("ops-password-1");
    await page.getByRole("button", {name: "Log in"}).click();
    const summary = page.locator("#device-count");
    await waitUntil(async () => (await summary.getAttribute("data-total")) === String(kDevices),
                    "the list to hold 10,000 devices");
    const rows = page.locator(".device-row:not([hidden])");
    const rowCount = async () => page.locator(".device-row").count();
    check(await rows.count() > 5, "rows are shown");
    check(await rowCount() <= kMaxRows, `at most ${kMaxRows} rows in the DOM, got ${await rowCount()}`);
    check(await page.locator(".device-row").first().getAttribute("aria-setsize") ===
          String(kDevices), "aria-setsize tells assistive technology the real size");
    await page.screenshot({path: path.join(args.artifacts, "10-device-list-10k.png")});

    // Scroll to the end: the last device is rendered, and still only a window of rows exists.
    await page.locator("#device-list").evaluate((list) => { list.scrollTop = list.scrollHeight; });
    await page.locator('.device-row[data-device="dev-09999"]').waitFor();
    check(await rowCount() <= kMaxRows, `after scrolling: ${await rowCount()} rows in the DOM`);
    check(await page.locator('.device-row[data-device="dev-00000"]').count() === 0,
          "the first device's row left the DOM");

    // Keyboard: Home, End, arrows; Enter opens the active device.
    const list = page.locator("#device-list");
    await list.focus();
    await page.keyboard.press("Home");
    await waitUntil(async () => (await list.getAttribute("aria-activedescendant")) ===
                                "device-option-0", "Home: the first row active");
    await page.locator('.device-row[data-device="dev-00000"]').waitFor();
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    await waitUntil(async () => (await list.getAttribute("aria-activedescendant")) ===
                                "device-option-2", "two arrows down: the third row active");
    await page.keyboard.press("End");
    await page.keyboard.press("ArrowUp");
    await waitUntil(async () => (await list.getAttribute("aria-activedescendant")) ===
                                `device-option-${kDevices - 2}`, "End, up: the second last");
    check(await page.locator(`#device-option-${kDevices - 2}`).getAttribute("aria-selected") ===
          "true", "the active row is aria-selected");
    check(await rowCount() <= kMaxRows, `after the keyboard: ${await rowCount()} rows in the DOM`);
    await page.screenshot({path: path.join(args.artifacts, "11-device-list-10k-end.png")});

    // Search narrows to one device.
    await page.getByLabel("Search").fill("dev-04242");
    await waitUntil(async () => (await summary.getAttribute("data-shown")) === "1", "one match");
    check(await rows.count() === 1, "one row shown");
    await page.getByLabel("Search").press("Enter");
    await page.keyboard.press("Enter");
    await page.waitForURL(/#\/devices\/dev-04242$/, {timeout: kTimeoutMs});
    await page.locator('figure.chart[data-key="value"]').waitFor();
    check(errors.length === 0, `no page errors: ${errors.join("; ")}`);
  } catch (e) {
    await args.onFailure();
    throw e;
  } finally {
    await browser.close();
  }
}

await runCases([tenThousandDevicesStayVirtualised]);
