#!/usr/bin/python3
"""Black-box interoperability: paho-mqtt (MQTT 3.1.1) clients against `tern serve`."""

import json
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import PahoClient, TernServer, check, check_equal  # noqa: E402

NODE = "bb-paho-node"


def start(args):
    return TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE).start()


def test_qos12_publish_and_wildcard_subscribe(args):
    """QoS 1 and 2 publishes complete (wait_for_publish); a device/# subscriber gets both at
    their QoS, and both are stored."""
    with start(args) as server:
        with PahoClient(server.mqtt_port, "bb-sub") as sub, \
                PahoClient(server.mqtt_port, "bb-pub") as pub:
            check_equal(sub.subscribe("device/#", 2), 2, "granted QoS for device/#")
            pub.publish("device/paho-a", json.dumps({"value": 1, "q": "one"}), qos=1)
            pub.publish("device/paho-a", json.dumps({"value": 2, "q": "two"}), qos=2)
            pub.publish("device/paho-b/extra", "deeper level", qos=1)
            got = sub.wait_messages(3)
            check_equal([(m.topic, m.qos, json.loads(m.payload)["value"]) for m in got[:2]],
                        [("device/paho-a", 1, 1), ("device/paho-a", 2, 2)],
                        "messages on device/# (topic, qos, value)")
            check_equal((got[2].topic, got[2].payload), ("device/paho-b/extra", b"deeper level"),
                        "third message on device/#")
            check_equal(len(got), 3, "messages received")

        stored = server.all_messages("paho-a")
        check_equal([m["fields"].get("value") for m in stored], [1, 2], "stored values of paho-a")
        check_equal({m["node"] for m in stored}, {NODE}, "node of stored messages")
        check_equal(server.message_count("paho-a"), 2, "message_count of paho-a")
        # device/+ does not match device/paho-b/extra
        check(server.device_summary("paho-b") is None,
              "device/paho-b/extra must not be stored by the default device/+ route")


def test_persistent_session(args):
    """clean_session=False: QoS 1 messages published while the client is away are delivered
    after it reconnects, without subscribing again; the CONNACK says session present."""
    with start(args) as server:
        client = PahoClient(server.mqtt_port, "bb-persistent", clean_session=False)
        try:
            client.subscribe("bb/persist/#", 1)
            client.disconnect()
        finally:
            client.close()

        with PahoClient(server.mqtt_port, "bb-persist-pub") as pub:
            for i in range(5):
                pub.publish("bb/persist/t", "queued-%d" % i, qos=1)
            pub.publish("bb/persist/t", "dropped-qos0", qos=0)

        with PahoClient(server.mqtt_port, "bb-persistent", clean_session=False,
                        connect=False) as again:
            flags = again.connect()
            check_equal(flags.get("session present"), 1, "CONNACK session present")
            # Live delivery on the restored subscription works too (and comes after the queue).
            with PahoClient(server.mqtt_port, "bb-persist-pub2") as pub:
                pub.publish("bb/persist/t", "live", qos=1)
            again.wait_for(lambda msgs: any(m.payload == b"live" for m in msgs),
                           what="the live message")
            # The broker may or may not have kept the QoS 0 message (MQTT 3.1.1 3.1.2.4).
            got = [m.payload.decode() for m in again.messages() if m.payload != b"dropped-qos0"]
            check_equal(got, ["queued-%d" % i for i in range(5)] + ["live"],
                        "messages after reconnecting with the persistent session, in order")
            check_equal({m.qos for m in again.messages() if m.payload != b"dropped-qos0"}, {1},
                        "delivery QoS of the queued messages")
            again.disconnect()

        # clean_session=True discards the session.
        with PahoClient(server.mqtt_port, "bb-persistent", clean_session=True,
                        connect=False) as clean:
            flags = clean.connect()
            check_equal(flags.get("session present"), 0, "CONNACK session present (clean)")


def test_unsubscribe_stops_delivery(args):
    """After UNSUBACK nothing more arrives on that filter; the other subscription still works
    (ordering across topics from one publisher is preserved, so the marker proves it)."""
    with start(args) as server:
        with PahoClient(server.mqtt_port, "bb-unsub") as sub, \
                PahoClient(server.mqtt_port, "bb-unsub-pub") as pub:
            sub.subscribe("bb/unsub/a", 1)
            sub.subscribe("bb/unsub/marker", 1)
            pub.publish("bb/unsub/a", "before", qos=1)
            sub.wait_messages(1, topic="bb/unsub/a")
            sub.unsubscribe("bb/unsub/a")
            pub.publish("bb/unsub/a", "after", qos=1)
            pub.publish("bb/unsub/marker", "marker", qos=1)
            sub.wait_messages(1, topic="bb/unsub/marker")
            check_equal([(m.topic, m.payload.decode()) for m in sub.messages()],
                        [("bb/unsub/a", "before"), ("bb/unsub/marker", "marker")],
                        "messages around the unsubscribe")


def test_200_qos1_messages_stored(args):
    """200 QoS 1 messages from one paho client are all stored: message_count == 200, every
    sequence number present."""
    with start(args) as server:
        with PahoClient(server.mqtt_port, "bb-bulk") as pub:
            infos = [pub.client.publish("device/paho-bulk", json.dumps({"seq": i, "value": i % 7}),
                                        qos=1) for i in range(200)]
            for i, info in enumerate(infos):
                check_equal(info.rc, 0, "publish rc of message %d" % i)
            for i, info in enumerate(infos):
                info.wait_for_publish(30)
                check(info.is_published(), "message %d not acknowledged within 30 s" % i)

        check_equal(server.message_count("paho-bulk"), 200,
                    "message_count of paho-bulk in GET /api/v1/devices")
        stored = server.all_messages("paho-bulk", limit=50)
        seqs = sorted(m["fields"]["seq"] for m in stored)
        check_equal(seqs, list(range(200)), "stored sequence numbers")


if __name__ == "__main__":
    ternlib.run_cases([
        test_qos12_publish_and_wildcard_subscribe,
        test_persistent_session,
        test_unsubscribe_stops_delivery,
        test_200_qos1_messages_stored,
    ], __doc__)
