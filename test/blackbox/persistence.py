#!/usr/bin/python3
"""Broker persistence, black-box: retained messages and persistent sessions (subscriptions,
queued QoS 1/2 messages, in-flight messages, session expiry, delayed wills) survive a graceful
restart and a kill -9 of the real `tern serve`; clean sessions do not come back. Clients: mosquitto_sub /
mosquitto_pub, paho (3.1.1 and 5), and a raw socket client for the in-flight (DUP) case."""

import os
import socket
import sqlite3
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import (MosquittoSub, PahoClient, TernServer, TestFailure, check,  # noqa: E402
                     check_equal, mosquitto_pub)

TIMEOUT = ternlib.DEFAULT_TIMEOUT


def restart(server, how):
    if how == "graceful":
        server.stop()
    else:
        server.kill9()
    server.start()


def broker_db_sessions(data_dir):
    """Client ids with a stored session (read-only; the server may be running: WAL allows it)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "broker.db"), uri=True)
    try:
        return {row[0] for row in db.execute("SELECT client_id FROM sessions")}
    finally:
        db.close()


class Paho5:
    """A paho MQTT 5 client: clean start and session expiry as given, records messages."""

    def __init__(self, port, client_id, clean_start, expiry):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        self.mqtt = mqtt
        self.cond = threading.Condition()
        self.connack = None
        self.received = []
        self.subacks = set()
        self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start,
                            properties=props)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        check(self.connack[1] == 0, "paho5 %r: CONNACK reason %r" % (client_id, self.connack[1]))

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self.cond:
            self.connack = (dict(flags), int(reason.value) if hasattr(reason, "value") else
                            int(reason))
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.received.append((message.topic, message.payload.decode(), message.qos))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self.cond:
            self.subacks.add(mid)
            self.cond.notify_all()

    def _wait(self, predicate, what):
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("paho5: timed out waiting for %s (got %r)" %
                                      (what, self.received))
                self.cond.wait(min(remaining, 0.2))

    def session_present(self):
        return bool(self.connack[0].get("session present"))

    def subscribe(self, topic, qos):
        _, mid = self.client.subscribe(topic, qos)
        self._wait(lambda: mid in self.subacks, "SUBACK")

    def wait_payload(self, payload):
        self._wait(lambda: any(p == payload for _, p, _ in self.received), "payload %r" % payload)
        with self.cond:
            return list(self.received)

    def close(self):
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------------------------
# A raw MQTT 3.1.1 client: to hold a PUBLISH without acknowledging it (in flight), which real
# client libraries do not let a test do.


def _remaining_length(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text):
    data = text.encode()
    return struct.pack("!H", len(data)) + data


class RawClient:
    def __init__(self, port, client_id, clean_session):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""
        flags = 0x02 if clean_session else 0
        body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + _utf8(client_id)
        self.send(0x10, body)
        header, body = self.read_packet()
        check_equal(header >> 4, 2, "raw client: first packet type (CONNACK)")
        check_equal(body[1], 0, "raw client: CONNACK return code")
        self.session_present = bool(body[0] & 1)

    def send(self, header, body):
        self.sock.sendall(bytes([header]) + _remaining_length(len(body)) + body)

    def read_packet(self):
        while True:
            if len(self.buffer) >= 2:
                length, multiplier, i = 0, 1, 1
                while i < len(self.buffer):
                    byte = self.buffer[i]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    i += 1
                    if not byte & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buffer) >= i + length:
                    header, body = self.buffer[0], self.buffer[i:i + length]
                    self.buffer = self.buffer[i + length:]
                    return header, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise TestFailure("raw client: connection closed by the server")
            self.buffer += chunk

    def subscribe(self, topic, qos):
        self.send(0x82, struct.pack("!H", 1) + _utf8(topic) + bytes([qos]))
        header, _ = self.read_packet()
        check_equal(header >> 4, 9, "raw client: SUBACK")

    def read_publish(self):
        """→ (dup, qos, packet id, topic, payload) of the next PUBLISH."""
        header, body = self.read_packet()
        check_equal(header >> 4, 3, "raw client: packet type (PUBLISH)")
        qos = (header >> 1) & 3
        (topic_len,) = struct.unpack("!H", body[:2])
        topic = body[2:2 + topic_len].decode()
        rest = body[2 + topic_len:]
        packet_id = 0
        if qos:
            (packet_id,) = struct.unpack("!H", rest[:2])
            rest = rest[2:]
        return bool(header & 0x08), qos, packet_id, topic, rest.decode()

    def puback(self, packet_id):
        self.send(0x40, struct.pack("!H", packet_id))

    def publish_qos2(self, topic, payload, packet_id, dup=False):
        self.send(0x34 | (0x08 if dup else 0),
                  _utf8(topic) + struct.pack("!H", packet_id) + payload.encode())

    def expect_ack(self, packet_type, packet_id, what):
        header, body = self.read_packet()
        check_equal((header >> 4, struct.unpack("!H", body[:2])[0]), (packet_type, packet_id),
                    what + " (packet type, packet id)")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Cases


def test_retained_survives_restart_and_kill9(args):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        mosquitto_pub(server.mqtt_port, "status/a", "A1", qos=1, retain=True)
        mosquitto_pub(server.mqtt_port, "status/b", "B1", qos=0, retain=True)
        mosquitto_pub(server.mqtt_port, "device/r1", '{"v":1}', qos=1, retain=True)
        for how, expected in (("graceful", {"status/a": "A1", "status/b": "B1"}),
                              ("kill9", {"status/a": "A2", "status/c": "C1"})):
            if how == "kill9":
                # Updated, added and cleared just before the crash (all acknowledged).
                mosquitto_pub(server.mqtt_port, "status/a", "A2", qos=1, retain=True)
                mosquitto_pub(server.mqtt_port, "status/c", "C1", qos=1, retain=True)
                mosquitto_pub(server.mqtt_port, "status/b", None, qos=1, retain=True,
                              null_message=True)
            restart(server, how)
            with MosquittoSub(server.mqtt_port, "status/#", qos=1, count=len(expected),
                              wait_seconds=TIMEOUT) as sub:
                got = sub.wait_messages(len(expected))
                sub.wait_exit()
            check_equal({t: p for _, _, t, p in got}, expected, "retained after %s restart" % how)
            check(all(r == 1 for r, _, _, _ in got), "retain flag set on %r" % got)
        # A marker published after the check proves nothing else was retained under status/#.
        with MosquittoSub(server.mqtt_port, "device/r1", count=1, wait_seconds=TIMEOUT) as sub:
            check_equal(sub.wait_messages(1)[0][3], '{"v":1}', "retained device/r1 (ingest path)")
        server.stop()


def _persistent_session_case(args, how):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        # A 3.1.1 persistent session made by mosquitto_sub -c, then the subscriber goes away.
        with MosquittoSub(server.mqtt_port, ["device/p1", "other/#"], qos=2,
                          extra_args=["-c", "-i", "keeper"]) as sub:
            sub.wait_subscribed()
        # Published while it is offline: QoS 1 on the ingest path, QoS 2 beside it.
        mosquitto_pub(server.mqtt_port, "device/p1", None, qos=1,
                      lines=['{"n":%d}' % i for i in range(5)])
        mosquitto_pub(server.mqtt_port, "other/q2", None, qos=2,
                      lines=["q2-%d" % i for i in range(5)])
        mosquitto_pub(server.mqtt_port, "other/q0", "dropped", qos=0)
        check("keeper" in broker_db_sessions(data), "session 'keeper' is in broker.db")
        restart(server, how)
        client = PahoClient(server.mqtt_port, client_id="keeper", clean_session=False,
                            connect=False)
        try:
            flags = client.connect()
            check_equal(flags.get("session present"), 1, "session present after %s restart" % how)
            got = client.wait_messages(10)
            qos1 = [m.payload.decode() for m in got if m.topic == "device/p1"]
            qos2 = [m.payload.decode() for m in got if m.topic == "other/q2"]
            check_equal(qos1, ['{"n":%d}' % i for i in range(5)], "QoS 1 messages, in order")
            check_equal(qos2, ["q2-%d" % i for i in range(5)], "QoS 2 messages, in order")
            check(all(m.qos == 1 for m in got if m.topic == "device/p1"), "QoS 1 kept")
            check(all(m.qos == 2 for m in got if m.topic == "other/q2"), "QoS 2 kept")
            # The subscription itself survived: a new publish reaches it; nothing else came.
            mosquitto_pub(server.mqtt_port, "other/after", "after", qos=1)
            got = client.wait_messages(11)
            check_equal([m.payload.decode() for m in got][-1], "after", "live message after")
            check(not any(m.topic == "other/q0" for m in got), "QoS 0 not queued: %r" % got)
            client.disconnect()
        finally:
            client.close()
        # Acknowledged messages are gone from the store: another restart delivers nothing old.
        server.stop()
        server.start()
        client = PahoClient(server.mqtt_port, client_id="keeper", clean_session=False,
                            connect=False)
        try:
            check_equal(client.connect().get("session present"), 1, "session present again")
            mosquitto_pub(server.mqtt_port, "other/marker", "marker", qos=1)
            got = client.wait_messages(1)
            check_equal([m.payload.decode() for m in got], ["marker"],
                        "only the marker after the acknowledged ones")
        finally:
            client.close()
        server.stop()


def test_persistent_session_graceful_restart(args):
    _persistent_session_case(args, "graceful")


def test_persistent_session_kill9(args):
    _persistent_session_case(args, "kill9")


def test_inflight_redelivered_with_dup_after_kill9(args):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        raw = RawClient(server.mqtt_port, "holder", clean_session=False)
        try:
            raw.subscribe("hold/#", 1)
            mosquitto_pub(server.mqtt_port, "hold/x", "held", qos=1)
            dup, qos, packet_id, topic, payload = raw.read_publish()
            check_equal((dup, qos, topic, payload), (False, 1, "hold/x", "held"), "first PUBLISH")
            # Not acknowledged: in flight when the server dies. The PUBACK the publisher got
            # above means the copy was already durable; the packet id is recorded just after
            # the send, so wait until broker.db shows it.
            db_path = os.path.join(data, "broker.db")

            def stored_packet_id():
                db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
                try:
                    row = db.execute("SELECT packet_id FROM messages WHERE client_id = 'holder'"
                                     ).fetchone()
                    return row is not None and row[0] == packet_id
                finally:
                    db.close()
            ternlib.wait_until(stored_packet_id, TIMEOUT, what="the in-flight packet id on disk")
            server.kill9()
        finally:
            raw.close()
        server.start()
        raw = RawClient(server.mqtt_port, "holder", clean_session=False)
        try:
            check(raw.session_present, "session present after kill -9")
            dup, qos, again_id, topic, payload = raw.read_publish()
            check_equal((dup, qos, again_id, topic, payload),
                        (True, 1, packet_id, "hold/x", "held"), "redelivered PUBLISH")
            raw.puback(again_id)
        finally:
            raw.close()
        server.stop()


def test_incoming_qos2_id_survives_kill9(args):
    """A QoS 2 publish answered with PUBREC before the crash: after kill -9 the resent PUBLISH
    (DUP) is known and not routed again, and PUBREL gets PUBCOMP (exactly once across the
    crash)."""
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        watcher = PahoClient(server.mqtt_port, client_id="q2-watcher", clean_session=False)
        try:
            watcher.subscribe("q2/#", 1)
        finally:
            watcher.close()
        raw = RawClient(server.mqtt_port, "q2-publisher", clean_session=False)
        try:
            raw.publish_qos2("q2/once", "once", 7)
            raw.expect_ack(5, 7, "PUBREC")
            server.kill9()
        finally:
            raw.close()
        server.start()
        raw = RawClient(server.mqtt_port, "q2-publisher", clean_session=False)
        try:
            check(raw.session_present, "publisher's session present after kill -9")
            # The publisher did not see our PUBREC in time, so it sends the PUBLISH again.
            raw.publish_qos2("q2/once", "once", 7, dup=True)
            raw.expect_ack(5, 7, "PUBREC for the resent PUBLISH")
            raw.send(0x62, struct.pack("!H", 7))  # PUBREL
            raw.expect_ack(7, 7, "PUBCOMP")
        finally:
            raw.close()
        watcher = PahoClient(server.mqtt_port, client_id="q2-watcher", clean_session=False,
                             connect=False)
        try:
            check_equal(watcher.connect().get("session present"), 1, "watcher session present")
            mosquitto_pub(server.mqtt_port, "q2/marker", "marker", qos=1)
            got = watcher.wait_messages(2)
            check_equal([m.payload.decode() for m in got], ["once", "marker"],
                        "the QoS 2 message exactly once, then the marker")
        finally:
            watcher.close()
        server.stop()


def test_every_acknowledged_copy_survives_kill9_mid_flood(args):
    """A paho QoS 1 publisher floods a topic an offline persistent session subscribes to; the
    server is killed while publishes are in flight. Every publish whose PUBACK came back must
    reach the subscriber after the restart (and arrive before a marker published afterwards)."""
    import paho.mqtt.client as mqtt
    data = os.path.join(args.tmp, "data")
    total = 800  # below mqtt.max_queued (1000): the queue keeps all of them
    with TernServer(args.tern, data) as server:
        server.start()
        keeper = PahoClient(server.mqtt_port, client_id="flood-keeper", clean_session=False)
        try:
            keeper.subscribe("flood/#", 1)
        finally:
            keeper.close()
        lock = threading.Lock()
        mid_to_seq = {}
        acked_mids = set()
        publisher = mqtt.Client(client_id="flood-publisher", clean_session=True,
                                protocol=mqtt.MQTTv311)
        publisher.max_inflight_messages_set(50)
        publisher.max_queued_messages_set(0)

        def on_publish(client, userdata, mid):
            with lock:
                acked_mids.add(mid)
        publisher.on_publish = on_publish
        publisher.connect("127.0.0.1", server.mqtt_port, keepalive=30)
        publisher.loop_start()
        try:
            for seq in range(total):
                # Not under `lock`: paho runs on_publish holding its own lock, which publish()
                # needs too.
                info = publisher.publish("flood/n", str(seq), qos=1)
                with lock:
                    mid_to_seq[info.mid] = seq
            ternlib.wait_until(lambda: len(acked_mids) >= 300, TIMEOUT, what="300 PUBACKs")
            server.kill9()
        finally:
            publisher.loop_stop()
            publisher.disconnect()
        with lock:
            acked = {mid_to_seq[mid] for mid in acked_mids if mid in mid_to_seq}
        check(len(acked) >= 300, "at least 300 acknowledged before the kill: %d" % len(acked))
        ternlib.log("%d of %d publishes acknowledged before the kill" % (len(acked), total))
        server.start()
        keeper = PahoClient(server.mqtt_port, client_id="flood-keeper", clean_session=False,
                            connect=False)
        try:
            check_equal(keeper.connect().get("session present"), 1, "keeper session present")
            mosquitto_pub(server.mqtt_port, "flood/marker", "marker", qos=1)
            keeper.wait_messages(1, topic="flood/marker")
            got = [int(m.payload) for m in keeper.messages("flood/n")]
            missing = sorted(acked - set(got))
            check(not missing, "%d acknowledged messages lost (first: %r); %d acked, %d received"
                  % (len(missing), missing[:10], len(acked), len(got)))
            check_equal(got, sorted(got), "delivered in publish order")
        finally:
            keeper.close()
        server.stop()


def test_session_expiry_across_restart(args):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        short = Paho5(server.mqtt_port, "short-lived", clean_start=True, expiry=2)
        short.subscribe("exp/#", 1)
        long_ = Paho5(server.mqtt_port, "long-lived", clean_start=True, expiry=3600)
        long_.subscribe("exp/#", 1)
        short.close()
        long_.close()
        ternlib.wait_until(lambda: server.health()["broker"]["clients_connected"] == 0, TIMEOUT,
                           what="both clients gone")
        mosquitto_pub(server.mqtt_port, "exp/queued", "queued", qos=1)
        server.stop()
        # Down for longer than the short session's expiry: its clock ran while nobody watched.
        time.sleep(3)
        server.start()
        short = Paho5(server.mqtt_port, "short-lived", clean_start=False, expiry=2)
        long_ = Paho5(server.mqtt_port, "long-lived", clean_start=False, expiry=3600)
        try:
            check(not short.session_present(), "expired session not present")
            check(long_.session_present(), "unexpired session present")
            check_equal(long_.wait_payload("queued"), [("exp/queued", "queued", 1)],
                        "queued message of the remaining session")
            # Nothing came for the expired one: a marker it subscribes to now arrives alone.
            short.subscribe("exp/#", 1)
            mosquitto_pub(server.mqtt_port, "exp/marker", "marker", qos=1)
            check_equal(short.wait_payload("marker"), [("exp/marker", "marker", 1)],
                        "expired session gets only the marker")
        finally:
            short.close()
            long_.close()
        server.stop()


def connect_with_delayed_will(port, client_id, topic, payload, delay):
    """A raw MQTT 5 client: persistent session (expiry 1 h) and a QoS 1 will held back `delay`
    seconds; returns the open socket once the CONNACK accepted it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    connect_props = bytes([0x11]) + struct.pack("!I", 3600)  # session expiry interval
    will_props = bytes([0x18]) + struct.pack("!I", delay)  # will delay interval
    flags = 0x04 | 0x08  # will flag, will QoS 1; no clean start
    body = (_utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", 60) +
            _remaining_length(len(connect_props)) + connect_props + _utf8(client_id) +
            _remaining_length(len(will_props)) + will_props + _utf8(topic) + _utf8(payload))
    sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
    reply = b""
    while len(reply) < 4:
        chunk = sock.recv(64)
        check(chunk, "delayed will client: connection closed before CONNACK")
        reply += chunk
    check_equal((reply[0], reply[3]), (0x20, 0), "delayed will client: CONNACK, reason code")
    return sock


def broker_db_wills(data_dir):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "broker.db"), uri=True)
    try:
        return {row[0]: row[1] for row in db.execute("SELECT client_id, payload FROM wills")}
    finally:
        db.close()


def test_delayed_will_survives_restart_and_kill9(args):
    """A will waiting out its delay when the server goes down is published after it comes back,
    once, to subscribers that arrived after the restart (so it was not sent before)."""
    data = os.path.join(args.tmp, "data")
    delay = 8  # well above a restart; the subscriber below subscribes right after it
    with TernServer(args.tern, data) as server:
        server.start()
        for how in ("graceful", "kill9"):
            client_id = "willer-" + how
            sock = connect_with_delayed_will(server.mqtt_port, client_id, "wills/" + how,
                                             "gone-" + how, delay)
            sock.close()  # without DISCONNECT: the will is due in `delay` seconds
            ternlib.wait_until(lambda: client_id in broker_db_wills(data), TIMEOUT,
                               what="the delayed will stored")
            restart(server, how)
            watcher = Paho5(server.mqtt_port, "watcher-" + how, clean_start=True, expiry=0)
            try:
                watcher.subscribe("wills/#", 1)
                got = watcher.wait_payload("gone-" + how)
                check_equal(got, [("wills/" + how, "gone-" + how, 1)],
                            "the will after a %s restart, once" % how)
            finally:
                watcher.close()
            ternlib.wait_until(lambda: client_id not in broker_db_wills(data), TIMEOUT,
                               what="the published will forgotten")
        # A session resumed within the delay takes its will back, across a restart too.
        sock = connect_with_delayed_will(server.mqtt_port, "resumer", "wills/resumer", "no",
                                         delay)
        sock.close()
        ternlib.wait_until(lambda: "resumer" in broker_db_wills(data), TIMEOUT,
                           what="the resumer's will stored")
        server.kill9()
        server.start()
        sock = connect_with_delayed_will(server.mqtt_port, "resumer", "wills/resumer", "no",
                                         delay)
        try:
            ternlib.wait_until(lambda: "resumer" not in broker_db_wills(data), TIMEOUT,
                               what="the resumed session's will forgotten")
        finally:
            sock.close()
        server.stop()


def test_clean_sessions_not_restored(args):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data) as server:
        server.start()
        with MosquittoSub(server.mqtt_port, "clean/#", qos=1, extra_args=["-i", "cleanone"]) as sub:
            sub.wait_subscribed()
            v5 = Paho5(server.mqtt_port, "clean5", clean_start=True, expiry=0)
            v5.subscribe("clean/#", 1)
            check_equal(broker_db_sessions(data), set(), "no stored sessions for clean clients")
            server.kill9()
            v5.close()
        server.start()
        for client_id in ("cleanone", "clean5"):
            client = PahoClient(server.mqtt_port, client_id=client_id, clean_session=False,
                                connect=False)
            try:
                check_equal(client.connect().get("session present"), 0,
                            "session present for clean client %r" % client_id)
            finally:
                client.close()
        server.stop()


if __name__ == "__main__":
    ternlib.run_cases([
        test_retained_survives_restart_and_kill9,
        test_persistent_session_graceful_restart,
        test_persistent_session_kill9,
        test_inflight_redelivered_with_dup_after_kill9,
        test_incoming_qos2_id_survives_kill9,
        test_every_acknowledged_copy_survives_kill9_mid_flood,
        test_session_expiry_across_restart,
        test_delayed_will_survives_restart_and_kill9,
        test_clean_sessions_not_restored,
    ], __doc__)
