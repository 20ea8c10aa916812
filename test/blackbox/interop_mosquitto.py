#!/usr/bin/python3
"""Black-box interoperability: the real mosquitto_pub / mosquitto_sub against `tern serve`."""

import os
import signal
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import TernServer, MosquittoSub, check, check_equal, mosquitto_pub  # noqa: E402

NODE = "bb-mosq-node"


def start(args):
    return TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE).start()


def test_qos_publish_subscribe(args):
    """QoS 0/1/2 from mosquitto_pub reach a mosquitto_sub: exactly the payloads, in order for
    one publisher connection, at the publish QoS (the subscriber asks for QoS 2)."""
    with start(args) as server:
        for qos in (0, 1, 2):
            topic = "bb/qos%d" % qos
            batch = ["q%d-line-%d" % (qos, i) for i in range(5)]
            single = "q%d-single {\"k\": %d}" % (qos, qos)
            expected = batch + [single]
            with MosquittoSub(server.mqtt_port, topic, qos=2, count=len(expected),
                              wait_seconds=30) as sub:
                sub.wait_subscribed()
                mosquitto_pub(server.mqtt_port, topic, lines=batch, qos=qos)
                mosquitto_pub(server.mqtt_port, topic, message=single, qos=qos)
                code = sub.wait_exit(timeout=60)
                received = sub.messages()
                check_equal(code, 0, "mosquitto_sub exit status for QoS %d (0 = got -C %d)" %
                            (qos, len(expected)))
                check_equal([m[3] for m in received], expected, "payloads received at QoS %d" % qos)
                check_equal({m[2] for m in received}, {topic}, "topics received at QoS %d" % qos)
                check_equal({m[1] for m in received}, {qos}, "delivery QoS for publish QoS %d" % qos)
                check_equal({m[0] for m in received}, {0}, "retain flag on live messages")


def test_retained(args):
    """A retained message goes to a later subscriber with the retain flag; an empty retained
    publish (-r -n) clears it, so a later subscriber's first message is a live one."""
    with start(args) as server:
        port = server.mqtt_port
        mosquitto_pub(port, "bb/retained", message="kept-value", qos=1, retain=True)
        with MosquittoSub(port, "bb/retained", qos=1, count=1, wait_seconds=20) as sub:
            check_equal(sub.wait_exit(timeout=40), 0, "mosquitto_sub exit status (retained)")
            check_equal(sub.messages(), [(1, 1, "bb/retained", "kept-value")],
                        "retained delivery to a later subscriber (retain, qos, topic, payload)")

        # Also through a wildcard subscription.
        with MosquittoSub(port, "bb/#", qos=0, count=1, wait_seconds=20) as sub:
            check_equal(sub.wait_exit(timeout=40), 0, "mosquitto_sub exit status (bb/#)")
            check_equal([(m[0], m[2], m[3]) for m in sub.messages()],
                        [(1, "bb/retained", "kept-value")], "retained delivery through bb/#")

        # Replace, then clear.
        mosquitto_pub(port, "bb/retained", message="replaced", qos=1, retain=True)
        with MosquittoSub(port, "bb/retained", qos=1, count=1, wait_seconds=20) as sub:
            check_equal(sub.wait_exit(timeout=40), 0, "mosquitto_sub exit status (replaced)")
            check_equal([m[3] for m in sub.messages()], ["replaced"],
                        "retained value after replacing it")

        mosquitto_pub(port, "bb/retained", qos=1, retain=True, null_message=True)
        with MosquittoSub(port, "bb/retained", qos=1, count=1, wait_seconds=30) as sub:
            sub.wait_subscribed()
            mosquitto_pub(port, "bb/retained", message="live-after-clear", qos=1)
            check_equal(sub.wait_exit(timeout=60), 0, "mosquitto_sub exit status (after clear)")
            check_equal(sub.messages(), [(0, 1, "bb/retained", "live-after-clear")],
                        "first message after clearing the retained one (must be the live one)")


def test_ingest_via_mosquitto_pub(args):
    """mosquitto_pub -q 1 to device/abc is stored (PUBACK means committed) and readable via the
    API with typed fields and the node id."""
    with start(args) as server:
        payload = '{"uuid":"abc","value":25}'
        mosquitto_pub(server.mqtt_port, "device/abc", message=payload, qos=1)
        messages = server.all_messages("abc")
        check_equal(len(messages), 1, "messages stored for device abc")
        m = messages[0]
        check_equal(m.get("node"), NODE, "node of the stored message")
        check_equal(m.get("topic"), "device/abc", "topic of the stored message")
        fields = m.get("fields")
        check(isinstance(fields, dict), "fields is not an object: %r" % (m,))
        check(fields.get("value") == 25 and type(fields.get("value")) is int,
              "fields.value: expected integer 25, got %r" % (fields.get("value"),))
        check_equal(fields.get("uuid"), "abc", "fields.uuid")
        check_equal(m.get("payload"), payload, "raw payload")
        check_equal(m.get("payload_encoding"), "utf8", "payload_encoding")
        check_equal(m.get("json"), True, "json flag")
        ternlib.parse_rfc3339(m.get("ts"))

        device = server.device_summary("abc")
        check(device is not None, "device abc missing from GET /api/v1/devices")
        check_equal(device.get("message_count"), 1, "message_count of device abc")
        check_equal((device.get("latest") or {}).get("value"), 25, "latest.value of device abc")

        # A topic outside the ingest route is routed but not stored.
        mosquitto_pub(server.mqtt_port, "other/abc", message=payload, qos=1)
        check_equal(len(server.all_messages("abc")), 1, "messages of abc after an unrouted publish")


def wait_clients_connected(server, n, timeout=30):
    """Waits until health reports `n` connected MQTT clients, if it reports them at all."""
    def done():
        broker = server.health().get("broker")
        if not isinstance(broker, dict) or "clients_connected" not in broker:
            return True
        return broker["clients_connected"] == n
    ternlib.wait_until(done, timeout, what="health broker.clients_connected == %d" % n)


def test_will_message(args):
    """A client with a will killed by SIGKILL: another subscriber receives the will."""
    with start(args) as server:
        port = server.mqtt_port
        with MosquittoSub(port, "bb/will/status", qos=1, count=1, wait_seconds=60) as watcher:
            watcher.wait_subscribed()
            with MosquittoSub(port, "bb/will/dummy", qos=0, extra_args=[
                    "-i", "bb-will-client", "--will-topic", "bb/will/status",
                    "--will-payload", "client-died", "--will-qos", "1"]) as victim:
                victim.wait_subscribed()
                check_equal(watcher.messages(), [], "messages before the will client died")
                victim.kill(signal.SIGKILL)
            check_equal(watcher.wait_exit(timeout=60), 0, "watcher exit status (got the will)")
            check_equal(watcher.messages(), [(0, 1, "bb/will/status", "client-died")],
                        "will message delivered to the watcher")

        # A clean disconnect discards the will.
        with MosquittoSub(port, "bb/will/#", qos=1, count=2, wait_seconds=30) as watcher:
            watcher.wait_subscribed()
            mosquitto_pub(port, "bb/will/clean", message="x", qos=1, extra_args=[
                "--will-topic", "bb/will/status", "--will-payload", "should-not-be-sent"])
            # Let the broker finish with that connection (a will would be routed by then)
            # before the marker, when the health answer tells.
            wait_clients_connected(server, 1)
            mosquitto_pub(port, "bb/will/marker", message="marker", qos=1)
            check_equal(watcher.wait_exit(timeout=60), 0, "watcher exit status")
            check_equal([m[2:] for m in watcher.messages()],
                        [("bb/will/clean", "x"), ("bb/will/marker", "marker")],
                        "messages after a clean disconnect with a will (no will expected)")


def test_sys_version(args):
    """$SYS/broker/version is readable with mosquitto_sub."""
    with start(args) as server:
        with MosquittoSub(server.mqtt_port, "$SYS/broker/version", count=1,
                          wait_seconds=20) as sub:
            check_equal(sub.wait_exit(timeout=40), 0, "mosquitto_sub exit status for $SYS")
            messages = sub.messages()
            check_equal(len(messages), 1, "messages on $SYS/broker/version")
            check_equal(messages[0][2], "$SYS/broker/version", "topic")
            check(messages[0][3].strip() != "", "empty $SYS/broker/version payload")
            ternlib.log("$SYS/broker/version = %r" % messages[0][3])
        # '#' must not match $SYS topics (MQTT 3.1.1 4.7.2).
        with MosquittoSub(server.mqtt_port, "#", count=1, wait_seconds=30) as sub:
            sub.wait_subscribed()
            mosquitto_pub(server.mqtt_port, "bb/after-sys", message="plain", qos=1)
            check_equal(sub.wait_exit(timeout=60), 0, "mosquitto_sub exit status for #")
            check_equal([m[2] for m in sub.messages()], ["bb/after-sys"],
                        "first message on '#' (must not be a $SYS topic)")


if __name__ == "__main__":
    ternlib.run_cases([
        test_qos_publish_subscribe,
        test_retained,
        test_ingest_via_mosquitto_pub,
        test_will_message,
        test_sys_version,
    ], __doc__)
