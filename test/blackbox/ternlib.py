"""Shared helpers for Tern's black-box tests.

Only the standard library (and, in the scripts that need it, paho-mqtt). Everything runs on
loopback, in temporary directories, and every process started here is killed on the way out.
Run the scripts with /usr/bin/python3 (Debian's python3-paho-mqtt is only visible there).
"""

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HEALTH_PATH = "/api/v1/health"
DEFAULT_TIMEOUT = 30.0

# Everything a case starts, so run_cases can kill leftovers and show server logs on failure.
_LIVE_SERVERS = []
_LIVE_PROCS = []


class TestFailure(Exception):
    """A failed check; the message says what was expected and what happened."""


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def check_equal(actual, expected, what):
    if actual != expected:
        raise TestFailure("%s: expected %r, got %r" % (what, expected, actual))


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tern", required=True, help="path to the tern binary")
    args = parser.parse_args()
    args.tern = os.path.abspath(args.tern)
    if not os.access(args.tern, os.X_OK):
        print("FAIL: %s is not an executable" % args.tern, file=sys.stderr)
        sys.exit(1)
    return args


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Settings every test server gets through the environment: the vehicle tracker listeners
# default to fixed ports on 0.0.0.0, which tests must not bind (loopback only, and parallel
# test runs would collide).
SERVE_ENV_DEFAULTS = {"TERN_TRACKERS_ENABLED": ""}


def clean_env(extra=None):
    """The current environment without any TERN_* variable (tern rejects unknown ones), plus
    SERVE_ENV_DEFAULTS and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERN_")}
    env.update(SERVE_ENV_DEFAULTS)
    if extra:
        env.update(extra)
    return env


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` seconds pass
    (TestFailure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def parse_rfc3339(text):
    """RFC 3339 text → aware datetime (TestFailure if it is not RFC 3339)."""
    check(isinstance(text, str), "timestamp %r is not a string" % (text,))
    normalized = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    check("T" in normalized or "t" in normalized, "timestamp %r is not RFC 3339" % text)
    try:
        value = datetime.datetime.fromisoformat(normalized.replace("t", "T"))
    except ValueError:
        raise TestFailure("timestamp %r is not RFC 3339" % text) from None
    check(value.tzinfo is not None, "timestamp %r has no UTC offset" % text)
    return value


# ---------------------------------------------------------------------------------------------
# HTTP


def http_request(url, method="GET", body=None, headers=None, timeout=10.0):
    """Any method → (status, body bytes, headers). `body` (a dict) is sent as JSON. HTTP errors
    are returned, not raised."""
    all_headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def http_get(url, timeout=10.0, headers=None):
    """GET → (status, body bytes, headers). HTTP errors are returned, not raised."""
    all_headers = {"Accept": "application/json"}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, body, e.headers


def http_get_json(url, expect_status=200, timeout=10.0, headers=None):
    status, body, _ = http_get(url, timeout=timeout, headers=headers)
    if expect_status is not None and status != expect_status:
        raise TestFailure("GET %s: expected status %d, got %d: %s" %
                          (url, expect_status, status, body[:500].decode("utf-8", "replace")))
    try:
        return json.loads(body)
    except ValueError as e:
        raise TestFailure("GET %s: body is not JSON (%s): %r" % (url, e, body[:500])) from None


# ---------------------------------------------------------------------------------------------
# The server

# data dir → "Bearer <admin API key>", so every TernServer on the same data dir (restarts,
# reopen after a crash) reuses the key made for it.
_API_AUTH = {}
FIRST_ADMIN_PASSWORD = re.compile(r"created user 'admin' \(role admin\) with password (\S+)")


class TernServer:
    """`tern serve` on free loopback ports, with stdout/stderr captured to files.

    Use as a context manager (a normal exit stops it with SIGTERM and checks exit status 0; an
    exception kills it), or call kill() in a finally block; stop() sends a signal and checks
    for exit status 0.
    """

    def __init__(self, tern, data_dir, node_id="bb-node", extra_args=(), env=None,
                 log_dir=None, name="tern"):
        self.tern = tern
        self.data_dir = data_dir
        self.node_id = node_id
        self.extra_args = list(extra_args)
        self.env = env
        # Logs next to the data dir, not in it: tern creates the data dir itself.
        self.log_dir = log_dir or os.path.dirname(os.path.abspath(data_dir))
        self.name = name
        self.proc = None
        self.mqtt_port = None
        self.http_port = None
        self.stderr_path = None
        self.stdout_path = None
        self._starts = 0
        _LIVE_SERVERS.append(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self):
        cmd = [self.tern, "serve",
               "--data-dir", self.data_dir,
               "--mqtt-listen", "127.0.0.1:%d" % self.mqtt_port,
               "--http-listen", "127.0.0.1:%d" % self.http_port]
        if self.node_id is not None:
            cmd += ["--node-id", self.node_id]
        return cmd + self.extra_args

    def start(self, timeout=DEFAULT_TIMEOUT, attempts=3):
        """Starts the server and waits until GET /api/v1/health answers 200. Picks new ports
        each time (and retries when another process took a port in between)."""
        check(self.proc is None or self.proc.poll() is not None, "server already running")
        last_error = None
        for _ in range(attempts):
            self.mqtt_port = free_port()
            self.http_port = free_port()
            while self.http_port == self.mqtt_port:
                self.http_port = free_port()
            self._starts += 1
            os.makedirs(self.log_dir, exist_ok=True)
            self.stdout_path = os.path.join(self.log_dir, "%s-%d.stdout" % (self.name, self._starts))
            self.stderr_path = os.path.join(self.log_dir, "%s-%d.stderr" % (self.name, self._starts))
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL,
                                             env=self.env if self.env is not None else clean_env())
            try:
                self.wait_ready(timeout)
                log("%s started: pid %d, mqtt 127.0.0.1:%d, http 127.0.0.1:%d, data %s" %
                    (self.name, self.proc.pid, self.mqtt_port, self.http_port, self.data_dir))
                return self
            except TestFailure as e:
                last_error = e
                if self.proc.poll() is None:
                    # Running but never became healthy: that is a real failure, not a port race.
                    self.kill()
                    raise
                stderr = self.stderr()
                if "address" not in stderr.lower() and "bind" not in stderr.lower():
                    raise
                log("%s: ports were taken, retrying: %s" % (self.name, stderr.strip()[-300:]))
        raise last_error

    def admin_password(self):
        """The password Tern printed when it created the first admin, or None."""
        match = FIRST_ADMIN_PASSWORD.search(self.stderr())
        return match.group(1) if match else None

    def login(self, name, password, expect_status=200):
        """POST /api/v1/auth/login → the response body (token pair)."""
        status, body, _ = http_request(self.url("/api/v1/auth/login"), "POST",
                                       {"name": name, "password": password})
        check(status == expect_status, "login as %r: expected status %d, got %d: %s" %
              (name, expect_status, status, body[:300]))
        return json.loads(body)

    def auth_header(self):
        """{"Authorization": "Bearer <admin API key>"} for this data dir, made on first use:
        log in as the admin Tern created on first start (else add one with `tern user add`),
        and create an API key, which outlives restarts."""
        key = os.path.abspath(self.data_dir)
        if key not in _API_AUTH:
            password = self.admin_password()
            name = "admin"
            if password is None:
                name = "bb-admin-%d" % os.getpid()
                password = "bb-password-%d" % os.getpid()
                cmd = [self.tern, "user", "add", name, "--role", "admin", "--password-stdin",
                       "--data-dir", self.data_dir]
                if "--config" in self.extra_args:
                    cmd += ["--config", self.extra_args[self.extra_args.index("--config") + 1]]
                result = subprocess.run(cmd, input=(password + "\n").encode(), capture_output=True,
                                        env=self.env if self.env is not None else clean_env(),
                                        timeout=DEFAULT_TIMEOUT)
                check(result.returncode == 0, "tern user add failed: %s" % result.stderr[-500:])
            token = self.login(name, password)["access_token"]
            status, body, _ = http_request(self.url("/api/v1/api-keys"), "POST",
                                           {"name": "blackbox", "role": "admin"},
                                           headers={"Authorization": "Bearer " + token})
            check(status == 201, "creating an API key: status %d: %s" % (status, body[:300]))
            _API_AUTH[key] = "Bearer " + json.loads(body)["key"]
        return {"Authorization": _API_AUTH[key]}

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise TestFailure("%s exited with status %d before becoming healthy; stderr:\n%s" %
                                  (self.name, code, self.stderr_tail()))
            try:
                status, body, _ = http_get(self.url(HEALTH_PATH), timeout=2.0)
                if status == 200:
                    return json.loads(body)
                last = "status %d: %r" % (status, body[:200])
            except (OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.05)
        raise TestFailure("%s did not answer %s within %.0f s (last: %s); stderr:\n%s" %
                          (self.name, HEALTH_PATH, timeout, last, self.stderr_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_TIMEOUT, expect_code=0):
        """Sends `sig`, waits for the exit and checks the exit status."""
        if self.proc is None:
            return None
        check(self.proc.poll() is None,
              "%s died on its own with status %s; stderr:\n%s" %
              (self.name, self.proc.returncode, self.stderr_tail()))
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("%s did not exit within %.0f s of %s; stderr:\n%s" %
                              (self.name, timeout, signal.Signals(sig).name, self.stderr_tail()))
        if expect_code is not None and code != expect_code:
            raise TestFailure("%s exited with status %d after %s (expected %d); stderr:\n%s" %
                              (self.name, code, signal.Signals(sig).name, expect_code,
                               self.stderr_tail()))
        log("%s stopped with %s: exit status %d" % (self.name, signal.Signals(sig).name, code))
        return code

    def kill9(self):
        """SIGKILL: the crash case. Waits for the process to be gone."""
        check(self.proc is not None and self.proc.poll() is None,
              "%s is not running (status %s); stderr:\n%s" %
              (self.name, self.proc.returncode if self.proc else None, self.stderr_tail()))
        self.proc.kill()
        self.proc.wait(timeout=DEFAULT_TIMEOUT)
        log("%s killed with SIGKILL" % self.name)

    def kill(self):
        """Cleanup: kills the process if it still runs. Never raises."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=DEFAULT_TIMEOUT)
            except Exception:  # noqa: BLE001 - cleanup must not mask the real error
                pass

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """A block that ends normally stops the server with SIGTERM and checks exit status 0;
        one that raised just kills it."""
        if exc_type is None and self.running():
            self.stop()
        self.kill()
        return False

    # -- helpers -----------------------------------------------------------------------------

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    def get_json(self, path, expect_status=200):
        """GET with the admin API key (health needs none, but gets it too)."""
        return http_get_json(self.url(path), expect_status=expect_status,
                             headers=self.auth_header())

    def request(self, method, path, body=None, auth=True):
        """(status, parsed JSON body or None, headers), with the admin API key unless
        auth=False."""
        headers = self.auth_header() if auth else {}
        status, raw, response_headers = http_request(self.url(path), method, body, headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed, response_headers

    def health(self):
        return self.get_json(HEALTH_PATH)

    def devices(self):
        body = self.get_json("/api/v1/devices")
        check(isinstance(body, dict) and isinstance(body.get("devices"), list),
              "GET /api/v1/devices: expected {\"devices\": [...]}, got %r" % (body,))
        return body["devices"]

    def device_summary(self, device_id):
        """The entry of GET /api/v1/devices for `device_id`, or None."""
        for device in self.devices():
            if device.get("id") == device_id:
                return device
        return None

    def message_count(self, device_id):
        device = self.device_summary(device_id)
        return 0 if device is None else device.get("message_count", 0)

    def all_messages(self, device_id, limit=1000, max_pages=100000, extra_params=None):
        return fetch_all_messages(self, device_id, limit=limit, max_pages=max_pages,
                                  extra_params=extra_params)

    def stderr(self):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_tail(self, lines=40):
        return "\n".join(self.stderr().splitlines()[-lines:])


def fetch_all_messages(server, device_id, limit=1000, max_pages=100000, extra_params=None):
    """Every message of a device, oldest first, following next_cursor until it is null.
    Checks the page shape on the way (device, messages, next_cursor, page size <= limit)."""
    messages = []
    cursor = None
    seen_cursors = set()
    path = "/api/v1/devices/%s/messages" % urllib.parse.quote(device_id, safe="")
    for _ in range(max_pages):
        params = {"limit": str(limit)}
        if extra_params:
            params.update(extra_params)
        if cursor is not None:
            params["cursor"] = cursor
        body = server.get_json(path + "?" + urllib.parse.urlencode(params))
        check(isinstance(body, dict), "%s: expected an object, got %r" % (path, body))
        check(body.get("device") == device_id,
              "%s: expected \"device\": %r, got %r" % (path, device_id, body.get("device")))
        page = body.get("messages")
        check(isinstance(page, list), "%s: \"messages\" is not a list: %r" % (path, page))
        check(len(page) <= limit, "%s: page of %d messages exceeds limit=%d" %
              (path, len(page), limit))
        check("next_cursor" in body, "%s: response has no next_cursor member" % path)
        messages.extend(page)
        cursor = body["next_cursor"]
        if cursor is None:
            return messages
        check(isinstance(cursor, str) and cursor,
              "%s: next_cursor must be a non-empty string or null, got %r" % (path, cursor))
        check(cursor not in seen_cursors, "%s: next_cursor %r repeats (pagination loops)" %
              (path, cursor))
        seen_cursors.add(cursor)
        check(page, "%s: an empty page carries a next_cursor %r" % (path, cursor))
    raise TestFailure("%s: still paginating after %d pages" % (path, max_pages))


# ---------------------------------------------------------------------------------------------
# MQTT clients: mosquitto-clients and paho


def mosquitto_pub(port, topic, message=None, qos=0, retain=False, null_message=False,
                  lines=None, extra_args=(), timeout=DEFAULT_TIMEOUT):
    """Runs mosquitto_pub against 127.0.0.1:port and checks that it exits 0. `lines` publishes
    each line of the list as one message over one connection (-l)."""
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv311",
           "-t", topic, "-q", str(qos)]
    if retain:
        cmd.append("-r")
    stdin_data = None
    if null_message:
        cmd.append("-n")
    elif lines is not None:
        cmd.append("-l")
        stdin_data = ("\n".join(lines) + "\n").encode()
    else:
        cmd += ["-m", message]
    cmd += list(extra_args)
    try:
        result = subprocess.run(cmd, input=stdin_data, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s did not finish within %.0f s" % (" ".join(cmd), timeout)) from None
    if result.returncode != 0:
        raise TestFailure("%s exited with %d: %s %s" %
                          (" ".join(cmd), result.returncode,
                           result.stdout.decode(errors="replace"),
                           result.stderr.decode(errors="replace")))


class MosquittoSub:
    """mosquitto_sub in debug mode with a reader thread, so a test can wait for its SUBACK
    before publishing. Received messages are (retain, qos, topic, payload) tuples."""

    MARK = "MSG\x1f"

    def __init__(self, port, topics, qos=0, count=None, wait_seconds=None, extra_args=()):
        import threading
        if isinstance(topics, str):
            topics = [topics]
        # stdout is a pipe, so mosquitto_sub would block-buffer its debug lines: line-buffer.
        stdbuf = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        cmd = stdbuf + ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv311", "-d",
               "-q", str(qos), "-F", self.MARK + "%r\x1f%q\x1f%t\x1f%p"]
        for topic in topics:
            cmd += ["-t", topic]
        if count is not None:
            cmd += ["-C", str(count)]
        if wait_seconds is not None:
            cmd += ["-W", str(int(wait_seconds))]
        cmd += list(extra_args)
        self.cmd = cmd
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _LIVE_PROCS.append(self.proc)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("mosquitto_sub: timed out after %.0f s waiting for %s; "
                                      "output:\n%s" % (timeout, what, "\n".join(self.lines[-30:])))
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise TestFailure("mosquitto_sub exited with %s while waiting for %s; "
                                      "output:\n%s" % (self.proc.returncode, what,
                                                       "\n".join(self.lines[-30:])))
                self._cond.wait(min(remaining, 0.2))

    def wait_connected(self, timeout=DEFAULT_TIMEOUT):
        self._wait_for(lambda: any("received CONNACK" in l for l in self.lines), timeout,
                       "CONNACK")

    def wait_subscribed(self, timeout=DEFAULT_TIMEOUT):
        self._wait_for(lambda: any("received SUBACK" in l for l in self.lines), timeout,
                       "SUBACK")

    def messages(self):
        with self._cond:
            out = []
            for line in self.lines:
                if line.startswith(self.MARK):
                    retain, qos, topic, payload = line[len(self.MARK):].split("\x1f", 3)
                    out.append((int(retain), int(qos), topic, payload))
            return out

    def wait_messages(self, n, timeout=DEFAULT_TIMEOUT):
        self._wait_for(lambda: len(self.messages()) >= n, timeout, "%d message(s)" % n)
        return self.messages()

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("mosquitto_sub did not exit within %.0f s; output:\n%s" %
                              (timeout, "\n".join(self.lines[-30:]))) from None
        self._reader.join(timeout=5)
        return code

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=DEFAULT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


class PahoClient:
    """A paho-mqtt (1.6, MQTT 3.1.1) client with its network loop on a thread, recording
    received messages and waiting on CONNACK/SUBACK/UNSUBACK with time limits."""

    def __init__(self, port, client_id="", clean_session=True, connect=True, transport="tcp",
                 ws_path="/mqtt", tls_ca=None, tls_cert=None, tls_key=None):
        """transport "websockets" speaks MQTT over WebSocket at ws_path; tls_ca (a CA file)
        turns TLS on, tls_cert/tls_key add a client certificate."""
        import threading
        import paho.mqtt.client as mqtt
        self.mqtt = mqtt
        self.port = port
        self.client_id = client_id
        self._cond = threading.Condition()
        self.received = []  # paho MQTTMessage objects
        self.connack = None  # (flags, rc)
        self.disconnected = False
        self.subacks = {}  # mid -> granted qos tuple
        self.unsubacks = set()
        self.client = mqtt.Client(client_id=client_id, clean_session=clean_session,
                                  protocol=mqtt.MQTTv311, transport=transport)
        if transport == "websockets":
            self.client.ws_set_options(path=ws_path)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self._looping = False
        if connect:
            self.connect()

    # callbacks run on paho's thread
    def _on_connect(self, client, userdata, flags, rc):
        with self._cond:
            self.connack = (dict(flags), rc)
            self.disconnected = False
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc):
        with self._cond:
            self.disconnected = True
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.received.append(message)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted):
        with self._cond:
            self.subacks[mid] = tuple(granted)
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid):
        with self._cond:
            self.unsubacks.add(mid)
            self._cond.notify_all()

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("paho client %r: timed out after %.0f s waiting for %s" %
                                      (self.client_id, timeout, what))
                self._cond.wait(min(remaining, 0.2))

    def connect(self, timeout=DEFAULT_TIMEOUT):
        with self._cond:
            self.connack = None
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        if not self._looping:
            self.client.loop_start()
            self._looping = True
        self._wait(lambda: self.connack is not None, timeout, "CONNACK")
        flags, rc = self.connack
        check(rc == 0, "paho client %r: CONNACK return code %d" % (self.client_id, rc))
        return flags

    def subscribe(self, topic, qos, timeout=DEFAULT_TIMEOUT):
        rc, mid = self.client.subscribe(topic, qos)
        check(rc == self.mqtt.MQTT_ERR_SUCCESS, "paho subscribe(%r) failed: rc %d" % (topic, rc))
        self._wait(lambda: mid in self.subacks, timeout, "SUBACK for %r" % topic)
        granted = self.subacks[mid]
        check(granted and granted[0] != 0x80,
              "subscription to %r refused: granted %r" % (topic, granted))
        return granted[0]

    def unsubscribe(self, topic, timeout=DEFAULT_TIMEOUT):
        rc, mid = self.client.unsubscribe(topic)
        check(rc == self.mqtt.MQTT_ERR_SUCCESS, "paho unsubscribe(%r) failed: rc %d" % (topic, rc))
        self._wait(lambda: mid in self.unsubacks, timeout, "UNSUBACK for %r" % topic)

    def publish(self, topic, payload, qos, retain=False, timeout=DEFAULT_TIMEOUT):
        """Publishes and, for QoS 1/2, waits until the broker acknowledged (PUBACK/PUBCOMP)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        check(info.rc == self.mqtt.MQTT_ERR_SUCCESS,
              "paho publish to %r failed: rc %d" % (topic, info.rc))
        info.wait_for_publish(timeout)
        check(info.is_published(), "paho publish to %r (QoS %d) not acknowledged within %.0f s" %
              (topic, qos, timeout))
        return info

    def wait_messages(self, n, timeout=DEFAULT_TIMEOUT, topic=None):
        def matching():
            return [m for m in self.received if topic is None or m.topic == topic]
        self._wait(lambda: len(matching()) >= n, timeout,
                   "%d message(s)%s" % (n, " on %r" % topic if topic else ""))
        with self._cond:
            return matching()

    def wait_for(self, predicate, timeout=DEFAULT_TIMEOUT, what="messages"):
        """Waits until predicate(list of received messages) is true."""
        self._wait(lambda: predicate(list(self.received)), timeout, what)

    def messages(self, topic=None):
        with self._cond:
            return [m for m in self.received if topic is None or m.topic == topic]

    def disconnect(self, timeout=DEFAULT_TIMEOUT):
        """A clean DISCONNECT, waiting until the connection is closed."""
        self.client.disconnect()
        self._wait(lambda: self.disconnected, timeout, "the connection to close")
        if self._looping:
            self.client.loop_stop()
            self._looping = False

    def close(self):
        """Cleanup: never raises."""
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        if self._looping:
            try:
                self.client.loop_stop()
            except Exception:  # noqa: BLE001
                pass
            self._looping = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------------------------------------
# Processes and the test runner


class ProcessGroup:
    """Tracks helper processes (mosquitto_sub, tern sim, ...) so they all get killed."""

    def __init__(self):
        self.procs = []

    def popen(self, cmd, **kwargs):
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, **kwargs)
        self.procs.append(proc)
        _LIVE_PROCS.append(proc)
        return proc

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                    proc.wait(timeout=DEFAULT_TIMEOUT)
                except Exception:  # noqa: BLE001
                    pass
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()
        return False


@contextlib.contextmanager
def temp_dir(prefix="tern-bb-"):
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cleanup_case():
    """Kills whatever the last case left running."""
    for server in _LIVE_SERVERS:
        server.kill()
    for proc in _LIVE_PROCS:
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(timeout=DEFAULT_TIMEOUT)
            except Exception:  # noqa: BLE001
                pass
    del _LIVE_SERVERS[:]
    del _LIVE_PROCS[:]


def run_cases(cases, description):
    """Runs the test functions `cases` (each takes the parsed args) and exits 1 if any failed.
    Each case gets its own temp dir as args.tmp."""
    args = parse_args(description)
    failed = []
    for case in cases:
        name = case.__name__
        log("=== %s" % name)
        with temp_dir() as tmp:
            args.tmp = tmp
            try:
                case(args)
                log("--- PASS %s" % name)
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                failed.append(name)
                if isinstance(e, TestFailure):
                    log("--- FAIL %s: %s" % (name, e))
                else:
                    log("--- FAIL %s: unexpected %s" % (name, type(e).__name__))
                    traceback.print_exc(file=sys.stdout)
                for server in _LIVE_SERVERS:
                    if server.stderr_path:
                        print("----- %s (%s), last stderr lines:\n%s" %
                              (server.name, server.stderr_path, server.stderr_tail(60)))
                sys.stdout.flush()
            finally:
                cleanup_case()
    log("%d passed, %d failed%s" % (len(cases) - len(failed), len(failed),
                                    (": " + ", ".join(failed)) if failed else ""))
    sys.exit(1 if failed else 0)
