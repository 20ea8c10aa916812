// The session (access JWT + refresh token) and every call to Tern's API.
//
// Tokens live in sessionStorage: a reload keeps the tab logged in, and each tab has its own
// refresh token. Sharing one across tabs (localStorage) would have two tabs refresh with the same
// token, and Tern revokes a session whose refresh token is used twice.

const kStorageKey = "tern.session";
// Refresh this long before the access token expires (or at 80 % of a shorter lifetime).
const kRefreshMarginMs = 60_000;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

let session = loadSession();
let refreshing = null;  // the refresh in flight: everyone waits for the same one
let refreshTimer = null;
const sessionListeners = new Set();

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(kStorageKey) || "null");
    return saved && saved.access && saved.refresh ? saved : null;
  } catch {
    return null;
  }
}

function setSession(pair) {
  session = pair && {
    access: pair.access_token,
    refresh: pair.refresh_token,
    expiresAt: Date.now() + pair.expires_in * 1000,
    lifetimeMs: pair.expires_in * 1000,
    user: pair.user,
  };
  if (session) {
    sessionStorage.setItem(kStorageKey, JSON.stringify(session));
  } else {
    sessionStorage.removeItem(kStorageKey);
  }
  scheduleRefresh();
  for (const listener of sessionListeners) listener(session);
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = null;
  if (!session) return;
  const margin = Math.min(kRefreshMarginMs, (session.lifetimeMs || 0) * 0.2);
  const due = Math.max(0, session.expiresAt - margin - Date.now());
  refreshTimer = setTimeout(() => refresh().catch(() => {}), due);
}

export function currentUser() {
  return session ? session.user : null;
}

export function loggedIn() {
  return session !== null;
}

// fn(session or null) after every login, refresh and logout.
export function onSessionChange(fn) {
  sessionListeners.add(fn);
  return () => sessionListeners.delete(fn);
}

async function problemDetail(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

export async function login(name, password) {
  const response = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name, password}),
  });
  if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
  setSession(await response.json());
  return session.user;
}

// Swaps the refresh token for a new pair. A refused refresh ends the session (back to login).
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, "not logged in"));
  if (refreshing) return refreshing;
  const token = session.refresh;
  refreshing = (async () => {
    try {
      const response = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({refresh_token: token}),
      });
      if (response.status === 400 || response.status === 401) {
        setSession(null);
        throw new ApiError(401, await problemDetail(response));
      }
      if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
      setSession(await response.json());
      return session.access;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// A usable access token, refreshed first when it is about to expire.
export async function accessToken() {
  if (!session) throw new ApiError(401, "not logged in");
  const margin = Math.min(10_000, (session.lifetimeMs || 0) * 0.1);
  if (session.expiresAt - Date.now() < margin) return refresh();
  return session.access;
}

export async function logout() {
  const current = session;
  if (!current) return;
  setSession(null);
  try {
    await fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: {"Content-Type": "application/json", Authorization: `Bearer ${current.access}`},
      body: JSON.stringify({refresh_token: current.refresh}),
    });
  } catch {
    // The tokens are gone from this tab either way; the server lets them expire.
  }
}

// GET (or another method) of an API path; query: an object of parameters (undefined ones left
// out). A 401 refreshes the token once and retries. Resolves to the parsed JSON body.
export async function api(path, {method = "GET", query, body, signal} = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) params.set(name, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  for (let attempt = 0; ; ++attempt) {
    const token = await accessToken();
    const headers = {Authorization: `Bearer ${token}`, Accept: "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401 && attempt === 0) {
      await refresh();
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
    if (response.status === 204) return null;
    return response.json();
  }
}

export function devicePath(id, ...rest) {
  return ["/api/v1/devices", encodeURIComponent(id), ...rest.map(encodeURIComponent)].join("/");
}

// Start the refresh timer for a session restored from sessionStorage.
scheduleRefresh();
