#!/usr/bin/python3
"""Black-box MQTT 5.0 interoperability: mosquitto_pub/mosquitto_sub -V mqttv5 and paho-mqtt
(MQTTv5) clients against `tern serve`, next to 3.1.1 clients on the same topics."""

import json
import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import DEFAULT_TIMEOUT, PahoClient, TernServer, TestFailure, check, check_equal  # noqa: E402

NODE = "bb-mqtt5-node"


def start(args):
    return TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE).start()


def run(cmd, timeout=DEFAULT_TIMEOUT):
    """Runs a mosquitto client to completion; returns its stdout. Fails on a non-zero exit."""
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s did not finish within %.0f s" % (" ".join(cmd), timeout)) from None
    if result.returncode != 0:
        raise TestFailure("%s exited with %d: %s %s" % (" ".join(cmd), result.returncode,
                                                        result.stdout.decode(errors="replace"),
                                                        result.stderr.decode(errors="replace")))
    return result.stdout.decode(errors="replace")


def pub5(port, topic, message, *extra):
    run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-t", topic,
         "-m", message] + list(extra))


def sub5(port, topic, count, *extra, fmt="%t|%p"):
    """mosquitto_sub -V mqttv5 that exits after `count` messages (or fails after 10 s)."""
    count_args = ["-C", str(count)] if count > 0 else []  # 0: with -E, subscribe and exit
    out = run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-t", topic,
               "-W", "10", "-F", fmt] + count_args + list(extra), timeout=20)
    return [line for line in out.splitlines() if line]


class Paho5:
    """A paho-mqtt 1.6 client speaking MQTT 5, loop on a thread, every wait bounded."""

    def __init__(self, port, client_id="", clean_start=True, properties=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        self.mqtt = mqtt
        self.Properties = Properties
        self.PacketTypes = PacketTypes
        self.client_id = client_id
        self._cond = threading.Condition()
        self.received = []
        self.connack = None
        self.subacks = {}
        self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start,
                            properties=properties)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        check(self.connack[1] == 0, "paho5 %r: CONNACK reason %s" % (client_id, self.connack[1]))

    def props(self, packet_type):
        return self.Properties(packet_type)

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self._cond:
            self.connack = (dict(flags), reason.value, properties)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.received.append(message)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self._cond:
            self.subacks[mid] = [r.value for r in reasons]
            self._cond.notify_all()

    def _wait(self, predicate, what, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("paho5 %r: timed out waiting for %s" % (self.client_id, what))
                self._cond.wait(min(remaining, 0.2))

    def subscribe(self, topic, options, properties=None):
        from paho.mqtt.subscribeoptions import SubscribeOptions
        if isinstance(options, int):
            options = SubscribeOptions(qos=options)
        rc, mid = self.client.subscribe(topic, options=options, properties=properties)
        check(rc == 0, "paho5 subscribe(%r) failed: rc %d" % (topic, rc))
        self._wait(lambda: mid in self.subacks, "SUBACK for %r" % topic)
        return self.subacks[mid]

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        check(info.rc == 0, "paho5 publish to %r failed: rc %d" % (topic, info.rc))
        info.wait_for_publish(DEFAULT_TIMEOUT)
        check(info.is_published(), "paho5 publish to %r not acknowledged" % topic)

    def wait_messages(self, n, what="messages"):
        self._wait(lambda: len(self.received) >= n, "%d %s" % (n, what))
        with self._cond:
            return list(self.received)

    def messages(self):
        with self._cond:
            return list(self.received)

    def close(self):
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def test_mosquitto_v5_properties_retained_and_ingest(args):
    """mosquitto_pub -V mqttv5 with content type and user property: a retained message reaches
    a later mosquitto_sub -V mqttv5 with its properties; a QoS 1 publish on device/+ is stored."""
    with start(args) as server:
        port = server.mqtt_port
        pub5(port, "bb5/retained", "hello", "-q", "1", "-r",
             "-D", "publish", "content-type", "text/plain",
             "-D", "publish", "user-property", "k", "v")
        got = sub5(port, "bb5/#", 1, fmt="%t|%p|%C|%P")
        check_equal(got, ["bb5/retained|hello|text/plain|k:v"], "retained message with properties")
        pub5(port, "device/mosq5", json.dumps({"value": 5}), "-q", "1")
        check_equal(server.message_count("mosq5"), 1, "stored messages of mosq5")


def test_mosquitto_v5_session_expiry(args):
    """mosquitto_sub -V mqttv5 -c -x 60 keeps its session: QoS 1 messages published while it
    is away arrive when it comes back; with -x 0 (the default) nothing is kept."""
    with start(args) as server:
        port = server.mqtt_port
        base = ["-i", "bb5-sess", "-c", "-q", "1"]
        sub5(port, "bb5/sess/#", 0, *base, "-x", "60", "-E")  # subscribe, then leave
        for i in range(3):
            pub5(port, "bb5/sess/t", "queued-%d" % i, "-q", "1")
        got = sub5(port, "bb5/sess/#", 3, *base, "-x", "60")
        check_equal(got, ["bb5/sess/t|queued-%d" % i for i in range(3)], "queued messages")
        sub5(port, "bb5/gone/#", 0, "-i", "bb5-nosess", "-q", "1", "-E")
        pub5(port, "bb5/gone/t", "lost", "-q", "1")
        with Paho5(port, "bb5-nosess", clean_start=False) as again:
            check_equal(again.connack[0].get("session present"), 0, "session present after -x 0")


def test_paho_v5_connack_and_properties(args):
    """paho MQTTv5: an empty client id gets an assigned identifier; user properties, content
    type, response topic, correlation data and the remaining message expiry reach a v5
    subscriber; a subscription identifier comes back; no local suppresses our own messages."""
    with start(args) as server:
        port = server.mqtt_port
        with Paho5(port, "") as sub, Paho5(port, "bb5-pub") as pub:
            props = sub.connack[2]
            check(getattr(props, "AssignedClientIdentifier", ""), "assigned client identifier")
            check_equal(getattr(props, "SharedSubscriptionAvailable", None), 1,
                        "shared subscription available")
            from paho.mqtt.subscribeoptions import SubscribeOptions
            sp = sub.props(sub.PacketTypes.SUBSCRIBE)
            sp.SubscriptionIdentifier = 42
            check_equal(sub.subscribe("bb5/p/#", SubscribeOptions(qos=1, noLocal=True), sp), [1],
                        "SUBACK reason codes")
            pp = pub.props(pub.PacketTypes.PUBLISH)
            pp.UserProperty = [("a", "1"), ("b", "2")]
            pp.ContentType = "application/json"
            pp.ResponseTopic = "bb5/reply"
            pp.CorrelationData = b"\x01\x02"
            pp.MessageExpiryInterval = 120
            pp.PayloadFormatIndicator = 1
            pub.publish("bb5/p/x", '{"v":1}', 1, properties=pp)
            sub.publish("bb5/p/own", "mine", 1)  # no local: not delivered back
            pub.publish("bb5/p/last", "last", 1)
            got = sub.wait_messages(2)
            check_equal([m.topic for m in got], ["bb5/p/x", "bb5/p/last"], "received topics")
            p = got[0].properties
            check_equal(p.UserProperty, [("a", "1"), ("b", "2")], "user properties")
            check_equal(p.ContentType, "application/json", "content type")
            check_equal(p.ResponseTopic, "bb5/reply", "response topic")
            check_equal(p.CorrelationData, b"\x01\x02", "correlation data")
            check_equal(p.PayloadFormatIndicator, 1, "payload format indicator")
            check(0 < p.MessageExpiryInterval <= 120, "remaining expiry %r" % p.MessageExpiryInterval)
            check_equal(p.SubscriptionIdentifier, [42], "subscription identifier")


def test_paho_shared_subscription_v5_and_v311(args):
    """$share/grp/bb5/jobs/#: a paho v5 and a paho 3.1.1 member share 20 messages, each message
    to exactly one of them."""
    with start(args) as server:
        port = server.mqtt_port
        with Paho5(port, "bb5-m1") as m1, PahoClient(port, "bb5-m2") as m2, \
                Paho5(port, "bb5-producer") as pub:
            m1.subscribe("$share/grp/bb5/jobs/#", 1)
            m2.subscribe("$share/grp/bb5/jobs/#", 1)
            for i in range(20):
                pub.publish("bb5/jobs/%d" % i, "job", 1)
            deadline = time.monotonic() + DEFAULT_TIMEOUT
            while len(m1.messages()) + len(m2.messages()) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            topics = [m.topic for m in m1.messages()] + [m.topic for m in m2.messages()]
            check_equal(sorted(topics), sorted("bb5/jobs/%d" % i for i in range(20)),
                        "each job delivered once")
            check(m1.messages() and m2.messages(), "both members got work: %d / %d" %
                  (len(m1.messages()), len(m2.messages())))


def test_v311_and_v5_interoperate(args):
    """A paho 3.1.1 publisher and a paho v5 publisher, QoS 2 retained, on the same topics:
    live and retained copies reach subscribers of both versions."""
    with start(args) as server:
        port = server.mqtt_port
        with PahoClient(port, "bb5-old") as old, Paho5(port, "bb5-new") as new:
            old.subscribe("bb5/mix/#", 2)
            new.subscribe("bb5/mix/#", 2)
            old.publish("bb5/mix/from311", "a", 2, retain=True)
            new.publish("bb5/mix/from5", "b", 2, retain=True)
            expected = [("bb5/mix/from311", b"a", 2), ("bb5/mix/from5", b"b", 2)]
            check_equal([(m.topic, m.payload, m.qos) for m in old.wait_messages(2)], expected,
                        "3.1.1 subscriber")
            check_equal([(m.topic, m.payload, m.qos) for m in new.wait_messages(2)], expected,
                        "v5 subscriber")
        got = sorted(sub5(port, "bb5/mix/#", 2, "-q", "2", fmt="%r|%t|%p"))
        check_equal(got, ["1|bb5/mix/from311|a", "1|bb5/mix/from5|b"], "retained for mosquitto v5")


if __name__ == "__main__":
    ternlib.run_cases([
        test_mosquitto_v5_properties_retained_and_ingest,
        test_mosquitto_v5_session_expiry,
        test_paho_v5_connack_and_properties,
        test_paho_shared_subscription_v5_and_v311,
        test_v311_and_v5_interoperate,
    ], __doc__)
