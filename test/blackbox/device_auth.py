#!/usr/bin/python3
"""Black-box MQTT device authentication: `tern device add|token|remove` on the data dir of a
running `tern serve`, then paho-mqtt (MQTT 5) and mosquitto clients: CONNACK reason codes for
wrong passwords, anonymous clients and the rate limit, SUBACK 0x87 outside a device's topics, a
token login, and DISCONNECT 0x87 when the device is removed while connected."""

import json
import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import DEFAULT_TIMEOUT, TernServer, TestFailure, check, check_equal  # noqa: E402

PASSWORD = "dev-secret-1"


def start(args, name, env=None):
    """A server with anonymous clients refused (on loopback that takes the explicit setting)."""
    base = {"TERN_MQTT_ALLOW_ANONYMOUS": "false", "TERN_MQTT_CREDENTIAL_CHECK_INTERVAL": "1s"}
    base.update(env or {})
    return TernServer(args.tern, os.path.join(args.tmp, name, "data"),
                      env=ternlib.clean_env(base)).start()


def tern(args, server, *command):
    """Runs `tern <command> --data-dir <the server's>`; returns stdout. Fails on a non-zero exit."""
    cmd = [args.tern] + list(command) + ["--data-dir", server.data_dir]
    result = subprocess.run(cmd, capture_output=True, timeout=DEFAULT_TIMEOUT,
                            env=ternlib.clean_env())
    if result.returncode != 0:
        raise TestFailure("%s exited with %d: %s" % (" ".join(cmd), result.returncode,
                                                     result.stderr.decode(errors="replace")))
    return result.stdout.decode()


class Paho5:
    """paho-mqtt 1.6 over MQTT 5 with its loop on a thread; records the CONNACK reason code,
    SUBACK reason codes, a server DISCONNECT's reason code and messages. Every wait is bounded."""

    def __init__(self, port, client_id, username=None, password=None):
        import paho.mqtt.client as mqtt
        self.client_id = client_id
        self._cond = threading.Condition()
        self.connack = None
        self.disconnect_reason = None
        self.subacks = {}
        self.received = []
        # No automatic reconnects: a refused CONNECT must stay one attempt (the rate limit counts).
        self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5,
                                  reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self._cond:
            self.connack = reason.value
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, reason, properties=None):
        with self._cond:
            if self.disconnect_reason is None:  # the server's reason, not the lost connection after
                self.disconnect_reason = getattr(reason, "value", reason)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self._cond:
            self.subacks[mid] = [r.value for r in reasons]
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.received.append(message)
            self._cond.notify_all()

    def wait(self, predicate, what, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("paho5 %r: timed out waiting for %s" % (self.client_id, what))
                self._cond.wait(min(remaining, 0.2))

    def subscribe(self, topic, qos=1):
        rc, mid = self.client.subscribe(topic, qos=qos)
        check(rc == 0, "subscribe(%r) failed: rc %d" % (topic, rc))
        self.wait(lambda: mid in self.subacks, "SUBACK for %r" % topic)
        return self.subacks[mid]

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(DEFAULT_TIMEOUT)
        check(info.is_published(), "publish to %r not acknowledged" % topic)

    def close(self):
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def connack_of(port, client_id, username=None, password=None):
    with Paho5(port, client_id, username, password) as c:
        return c.connack


def test_reason_codes_and_topics(args):
    """Wrong password 0x86, unknown device 0x86, anonymous 0x87; the right password gets in, its
    own topics are granted, others get SUBACK 0x87, and what it may not publish is not stored."""
    with start(args, "codes") as server:
        port = server.mqtt_port
        out = tern(args, server, "device", "add", "dev-1", "--password", PASSWORD)
        check("dev-1" in out, "device add said %r" % out)
        check_equal(connack_of(port, "c1", "dev-1", "wrong-password"), 0x86, "wrong password")
        check_equal(connack_of(port, "c2", "nobody", PASSWORD), 0x86, "unknown device")
        check_equal(connack_of(port, "c3"), 0x87, "anonymous client")
        with Paho5(port, "c4", "dev-1", PASSWORD) as dev:
            check_equal(dev.connack, 0, "right password")
            check_equal(dev.subscribe("device/dev-1/#"), [1], "SUBACK for its own topics")
            check_equal(dev.subscribe("device/#"), [0x87], "SUBACK for every device's topics")
            check_equal(dev.subscribe("#"), [0x87], "SUBACK for everything")
            dev.publish("device/dev-1", json.dumps({"value": 1}))
            dev.publish("device/dev-2", json.dumps({"value": 2}))  # acked (0x87), not stored
            dev.publish("device/dev-1", json.dumps({"value": 3}))
        ternlib.wait_until(lambda: server.message_count("dev-1") == 2, 10, what="dev-1 stored")
        check_equal(server.message_count("dev-2"), 0, "messages stored for dev-2")


def test_token_login_and_removal_disconnects(args):
    """A token from `tern device token` is the username (no password) for mosquitto_pub; a
    connected paho client is disconnected with 0x87 once `tern device remove` ran, and its
    credentials no longer work."""
    with start(args, "token") as server:
        port = server.mqtt_port
        token = tern(args, server, "device", "token", "dev-t").strip()
        check(token.startswith("tdev_"), "token output %r" % token)
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                        "-u", token, "-t", "device/dev-t", "-m", json.dumps({"value": 7})],
                       check=True, timeout=DEFAULT_TIMEOUT, capture_output=True)
        ternlib.wait_until(lambda: server.message_count("dev-t") == 1, 10, what="dev-t stored")
        bad = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u",
                              token + "x", "-t", "device/dev-t", "-m", "{}"],
                             timeout=DEFAULT_TIMEOUT, capture_output=True)
        check(bad.returncode != 0, "a wrong token was accepted")

        with Paho5(port, "tok-client", token) as by_token:
            check_equal(by_token.connack, 0, "token login")
            tern(args, server, "device", "token", "dev-t", "--revoke")
            by_token.wait(lambda: by_token.disconnect_reason is not None, "DISCONNECT")
            check_equal(by_token.disconnect_reason, 0x87, "DISCONNECT reason after revoke")
        check_equal(connack_of(port, "tok-again", token), 0x86, "revoked token")

        tern(args, server, "device", "add", "dev-r", "--password", PASSWORD)
        with Paho5(port, "rm-client", "dev-r", PASSWORD) as dev:
            check_equal(dev.connack, 0, "login before removal")
            tern(args, server, "device", "remove", "dev-r")
            dev.wait(lambda: dev.disconnect_reason is not None, "DISCONNECT")
            check_equal(dev.disconnect_reason, 0x87, "DISCONNECT reason after removal")
        check_equal(connack_of(port, "rm-again", "dev-r", PASSWORD), 0x86, "removed device")


def test_service_user_and_rate_limit(args):
    """A service user (tern user add --role service) subscribes to '#' and gets a device's
    publish; an operator is not authorised (0x87); after mqtt.login_max_failures failures from
    one address even the right password gets 0x9F."""
    with start(args, "svc", {"TERN_MQTT_LOGIN_MAX_FAILURES": "3"}) as server:
        port = server.mqtt_port
        proc = subprocess.run([args.tern, "user", "add", "gateway", "--role", "service",
                               "--password-stdin", "--data-dir", server.data_dir],
                              input=b"svc-password-1\n", capture_output=True,
                              timeout=DEFAULT_TIMEOUT, env=ternlib.clean_env())
        check(proc.returncode == 0, "user add: %s" % proc.stderr.decode(errors="replace"))
        subprocess.run([args.tern, "user", "add", "ops", "--role", "operator",
                        "--password-stdin", "--data-dir", server.data_dir],
                       input=b"ops-password-1\n", capture_output=True, check=True,
                       timeout=DEFAULT_TIMEOUT, env=ternlib.clean_env())
        tern(args, server, "device", "add", "dev-s", "--password", PASSWORD)
        with Paho5(port, "gw", "gateway", "svc-password-1") as gw, \
                Paho5(port, "dev-s-client", "dev-s", PASSWORD) as dev:
            check_equal(gw.connack, 0, "service user login")
            check_equal(gw.subscribe("#"), [1], "SUBACK of '#' for a service user")
            dev.publish("device/dev-s", json.dumps({"value": 5}))
            gw.wait(lambda: any(m.topic == "device/dev-s" for m in gw.received), "the publish")
        check_equal(connack_of(port, "ops", "ops", "ops-password-1"), 0x87, "operator user")
        for i in range(3):
            check_equal(connack_of(port, "bad-%d" % i, "dev-s", "nope-%d" % i), 0x86,
                        "failure %d" % (i + 1))
        check_equal(connack_of(port, "limited", "dev-s", PASSWORD), 0x9F, "rate limited")


if __name__ == "__main__":
    ternlib.run_cases([
        test_reason_codes_and_topics,
        test_token_login_and_removal_disconnects,
        test_service_user_and_rate_limit,
    ], __doc__)
