// Helpers for the browser tests: a real `tern serve` on free loopback ports in a temp dir,
// users, MQTT publishes (mosquitto_pub), OsmAnd positions, and Debian's chromium driven by npm
// playwright-core. Every wait is bounded; everything started here is killed on the way out.
import {spawn, spawnSync} from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import {createRequire} from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export const kTimeoutMs = 60_000;  // generous: the test machine may be busy building
const live = [];                   // processes to kill on exit
const servers = [];                // their stderr is shown when a case fails
const pages = [];                  // screenshot when a case fails

export function log(message) {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

export function parseArgs() {
  const args = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const name of ["tern", "node-modules", "artifacts"]) {
    if (!args[name]) throw new Error(`missing --${name}`);
  }
  fs.mkdirSync(args.artifacts, {recursive: true});
  return args;
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// Polls fn until it returns a truthy value (returned), or fails after timeoutMs.
export async function waitUntil(fn, what, timeoutMs = kTimeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}` +
                      (lastError ? ` (last error: ${lastError.message})` : ""));
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), "tern-browser-"));
}

function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TERN_")) env[k] = v;
  // Tracker listeners default to fixed ports on 0.0.0.0: off unless a test enables one.
  env.TERN_TRACKERS_ENABLED = "";
  return {...env, ...extra};
}

// An HTTP request → {status, headers, body (string)}.
export function request(url, {method = "GET", headers = {}, body} = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {method, headers}, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({status: res.statusCode, headers: res.headers,
                                   body: Buffer.concat(chunks).toString("utf8")}));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${url}: no answer in 10 s`)));
    req.on("error", reject);
    if (body !== undefined) req.end(typeof body === "string" ? body : JSON.stringify(body));
    else req.end();
  });
}

export class TernServer {
  constructor(tern, dir, env = {}) {
    this.tern = tern;
    this.dir = dir;
    this.dataDir = path.join(dir, "data");
    this.env = cleanEnv(env);
  }

  async start() {
    this.mqttPort = await freePort();
    this.httpPort = await freePort();
    this.stderrPath = path.join(this.dir, "tern.stderr");
    const err = fs.openSync(this.stderrPath, "w");
    this.proc = spawn(this.tern, ["serve", "--data-dir", this.dataDir, "--node-id", "browser-node",
                                  "--mqtt-listen", `127.0.0.1:${this.mqttPort}`,
                                  "--http-listen", `127.0.0.1:${this.httpPort}`],
                      {env: this.env, stdio: ["ignore", err, err]});
    live.push(this.proc);
    servers.push(this);
    await waitUntil(async () => {
      check(this.proc.exitCode === null, `tern serve exited: ${this.stderrTail()}`);
      return (await request(this.url("/api/v1/health"))).status === 200;
    }, "tern serve to answer /api/v1/health");
    log(`tern serve: http 127.0.0.1:${this.httpPort}, mqtt 127.0.0.1:${this.mqttPort}`);
    return this;
  }

  url(pathname) {
    return `http://127.0.0.1:${this.httpPort}${pathname}`;
  }

  stderrTail(lines = 40) {
    try {
      return fs.readFileSync(this.stderrPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  addUser(name, role, password) {
    const result = spawnSync(this.tern, ["user", "add", name, "--role", role, "--password-stdin",
                                         "--data-dir", this.dataDir],
                             {input: `${password}\n`, env: this.env, timeout: kTimeoutMs});
    check(result.status === 0, `tern user add ${name}: ${result.stderr}`);
  }

  async token(name, password) {
    const r = await request(this.url("/api/v1/auth/login"), {
      method: "POST", headers: {"Content-Type": "application/json"}, body: {name, password}});
    check(r.status === 200, `login as ${name}: ${r.status} ${r.body}`);
    return JSON.parse(r.body).access_token;
  }

  async getJson(pathname, token) {
    const r = await request(this.url(pathname), {headers: {Authorization: `Bearer ${token}`}});
    check(r.status === 200, `GET ${pathname}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  // mosquitto_pub at QoS 1: when it exits, the broker acknowledged (so the record is stored).
  publish(topic, payload) {
    const result = spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(this.mqttPort),
                                               "-q", "1", "-t", topic, "-m", payload],
                             {timeout: kTimeoutMs});
    check(result.status === 0, `mosquitto_pub ${topic}: ${result.stderr}`);
  }

  // Many messages over one connection: one line each (mosquitto_pub -l).
  publishLines(topic, lines) {
    const result = spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(this.mqttPort),
                                               "-q", "1", "-t", topic, "-l"],
                             {timeout: 120_000, input: lines.join("\n") + "\n"});
    check(result.status === 0, `mosquitto_pub -l ${topic}: ${result.stderr}`);
  }

  stop() {
    if (this.proc && this.proc.exitCode === null) this.proc.kill("SIGKILL");
  }
}

export async function launchBrowser(nodeModules) {
  const require = createRequire(path.join(path.resolve(nodeModules), "index.js"));
  const {chromium} = require("playwright-core");
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
    timeout: kTimeoutMs,
  });
  return browser;
}

// A page that fails the test on uncaught errors and logs console errors.
export async function newPage(browser, errors) {
  const context = await browser.newContext({viewport: {width: 1280, height: 800}});
  const page = await context.newPage();
  page.setDefaultTimeout(kTimeoutMs);
  pages.push(page);
  page.on("pageerror", (e) => {
    log(`page error: ${e.stack || e.message}`);
    errors.push(`page error: ${e.message}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") log(`browser console error: ${m.text()}`);
  });
  return page;
}

// Runs the cases; each gets a fresh temp dir. Exits 1 if any failed.
export async function runCases(cases) {
  const args = parseArgs();
  let failed = 0;
  for (const testCase of cases) {
    // The case calls it before closing its browser.
    args.onFailure = async () => {
      for (const [i, page] of pages.entries()) {
        const file = path.join(args.artifacts, `${testCase.name}-failure-${i}.png`);
        await page.screenshot({path: file}).then(() => log(`screenshot: ${file}`), () => {});
      }
    };
    const dir = tempDir();
    log(`=== ${testCase.name}`);
    try {
      await testCase({...args, dir});
      pages.splice(0);
      log(`--- PASS ${testCase.name}`);
    } catch (e) {
      failed += 1;
      log(`--- FAIL ${testCase.name}: ${e.stack || e}`);
      for (const server of servers) log(`tern serve stderr (last lines):\n${server.stderrTail()}`);
      pages.splice(0);
    } finally {
      for (const proc of live.splice(0)) if (proc.exitCode === null) proc.kill("SIGKILL");
      servers.splice(0);
      fs.rmSync(dir, {recursive: true, force: true});
    }
  }
  log(`${cases.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
