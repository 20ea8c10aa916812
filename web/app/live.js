// The live feed: one WebSocket to /api/v1/live shared by every view.
//
// Protocol (see src/api/README.md): the client sends {"op":"subscribe"|"unsubscribe", "all",
// "devices", "groups", "keys"}; the server answers {"type":"subscribed", ...} after each op and
// pushes {"type":"records","coalesced":bool,"records":[...]} as records are stored. A token the
// server stops accepting closes the socket with 1008; we reconnect with a refreshed one. The
// views poll the API themselves while the feed is not open.
import {accessToken, refresh} from "./api.js";

const kMaxBackoffMs = 30_000;

function emptySubscription() {
  return {all: false, devices: [], groups: [], keys: []};
}

export class LiveFeed {
  constructor() {
    this.socket = null;
    this.state = "off";  // off | connecting | open | closed
    this.wanted = emptySubscription();  // what the current view asked for
    this.sent = emptySubscription();  // what the server has been told on this socket
    this.recordListeners = new Set();
    this.stateListeners = new Set();
    this.backoffMs = 1000;
    this.retryTimer = null;
    this.running = false;
    this.lastError = "";
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "logged out");
    }
    this.sent = emptySubscription();
    this.setState("off");
  }

  // The records the current view wants: {all, devices, groups, keys}. Replaces the previous one.
  subscribe(subscription) {
    this.wanted = {...emptySubscription(), ...subscription};
    this.sync();
  }

  // fn(records, coalesced) for every records message; returns a function that removes it.
  onRecords(fn) {
    this.recordListeners.add(fn);
    return () => this.recordListeners.delete(fn);
  }

  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }

  setState(state) {
    this.state = state;
    for (const fn of this.stateListeners) fn(state);
  }

  async connect() {
    if (!this.running) return;
    this.setState("connecting");
    let token;
    try {
      token = await accessToken();
    } catch {
      this.setState("closed");
      return;  // logged out: main.js stops the feed and shows the login page
    }
    if (!this.running) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/api/v1/live?access_token=${encodeURIComponent(token)}`;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      this.lastError = String(e);
      this.retry(false);
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.backoffMs = 1000;
      this.sent = emptySubscription();
      this.setState("open");
      this.sync();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "records" && Array.isArray(message.records)) {
        for (const fn of this.recordListeners) fn(message.records, Boolean(message.coalesced));
      } else if (message.type === "error") {
        this.lastError = message.detail || "error";
        console.warn("live feed:", this.lastError);
      }
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      // 1008: the token expired or was revoked. Refresh before reconnecting, at once.
      this.retry(event.code === 1008);
    });
  }

  retry(tokenExpired) {
    if (!this.running) return;
    this.setState("closed");
    clearTimeout(this.retryTimer);
    if (tokenExpired) {
      refresh().then(() => this.connect(), () => this.setState("closed"));
      return;
    }
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, kMaxBackoffMs);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // Tells the server the difference between what it has and what the view wants.
  sync() {
    if (!this.socket || this.state !== "open") return;
    const want = this.wanted;
    const had = this.sent;
    const minus = (a, b) => a.filter((x) => !b.includes(x));
    const drop = {
      all: had.all && !want.all,
      devices: minus(had.devices, want.devices),
      groups: minus(had.groups, want.groups),
      keys: minus(had.keys, want.keys),
    };
    const add = {
      all: want.all && !had.all,
      devices: minus(want.devices, had.devices),
      groups: minus(want.groups, had.groups),
      keys: minus(want.keys, had.keys),
    };
    const nonEmpty = (s) => s.all || s.devices.length || s.groups.length || s.keys.length;
    // "all" goes out only when true: in a subscribe, "all": false would turn it off.
    const message = (op, s) => JSON.stringify({op, ...s, all: s.all || undefined});
    if (nonEmpty(drop)) this.socket.send(message("unsubscribe", drop));
    if (nonEmpty(add)) this.socket.send(message("subscribe", add));
    this.sent = {
      all: want.all,
      devices: [...want.devices],
      groups: [...want.groups],
      keys: [...want.keys],
    };
  }
}
