#!/usr/bin/python3
"""Black-box transports: MQTT over WebSocket (paho transport="websockets", path /mqtt) on the
HTTP port and over TLS, MQTT over TLS with mosquitto_pub/mosquitto_sub --cafile, against
`tern serve`, each meeting plain TCP clients and the API. The PKI is made at test time with the
openssl CLI in the case's temp dir."""

import json
import os
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import (MosquittoSub, PahoClient, TernServer, TestFailure, check,  # noqa: E402
                     check_equal, mosquitto_pub)

NODE = "bb-transport-node"
NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*argv):
    result = subprocess.run(["openssl"] + list(argv), capture_output=True, timeout=60)
    if result.returncode != 0:
        raise TestFailure("openssl %s failed: %s" % (" ".join(argv),
                                                     result.stderr.decode(errors="replace")))


def make_pki(directory):
    """CA, server certificate for localhost/127.0.0.1, client certificate CN=device-7."""
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    openssl("req", "-x509", *NEW_KEY, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
            "-subj", "/CN=Tern Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext in [("server", "localhost",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                          ("client", "device-7", "extendedKeyUsage=clientAuth")]:
        with open(p(name + ".ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", *NEW_KEY, "-keyout", p(name + ".key"), "-out", p(name + ".csr"),
                "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-days", "2", "-out", p(name + ".pem"), "-extfile", p(name + ".ext"))
    return {name: p(name) for name in ["ca.pem", "server.pem", "server.key", "client.pem",
                                       "client.key"]}


def tls_server(args, pki, require_client_cert=False):
    tls_port = ternlib.free_port()
    wss_port = ternlib.free_port()
    env = {
        "TERN_MQTT_TLS_CERT": pki["server.pem"],
        "TERN_MQTT_TLS_KEY": pki["server.key"],
        "TERN_MQTT_TLS_LISTEN": "127.0.0.1:%d" % tls_port,
        "TERN_MQTT_WSS_LISTEN": "127.0.0.1:%d" % wss_port,
    }
    if require_client_cert:
        env["TERN_MQTT_TLS_CA"] = pki["ca.pem"]
        env["TERN_MQTT_TLS_REQUIRE_CLIENT_CERT"] = "true"
    server = TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE,
                        env=ternlib.clean_env(env)).start()
    return server, tls_port, wss_port


def test_websocket_on_the_http_port(args):
    """paho over WebSocket at ws://127.0.0.1:<http port>/mqtt: its QoS 1 publish is stored
    (API) and reaches a mosquitto_sub on TCP; a mosquitto_pub on TCP reaches it."""
    with TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE).start() as server:
        with MosquittoSub(server.mqtt_port, "device/#", qos=1) as tcp_sub, \
                PahoClient(server.http_port, "bb-ws", transport="websockets") as ws:
            tcp_sub.wait_subscribed()
            check_equal(ws.subscribe("device/tcp-side", 1), 1, "granted QoS over WebSocket")
            ws.publish("device/ws-side", json.dumps({"value": 42}), qos=1)
            got = tcp_sub.wait_messages(1)
            check_equal((got[0][2], json.loads(got[0][3])), ("device/ws-side", {"value": 42}),
                        "message at the TCP subscriber")
            stored = server.all_messages("ws-side")
            check_equal([m["fields"].get("value") for m in stored], [42], "stored values of ws-side")

            mosquitto_pub(server.mqtt_port, "device/tcp-side", json.dumps({"value": 7}), qos=1)
            msgs = ws.wait_messages(1, topic="device/tcp-side")
            check_equal(json.loads(msgs[0].payload), {"value": 7}, "message at the WebSocket client")
            check_equal(msgs[0].qos, 1, "delivery QoS over WebSocket")
            check_equal([m["fields"].get("value") for m in server.all_messages("tcp-side")], [7],
                        "stored values of tcp-side")
            ws.disconnect()


def test_websocket_and_mqtt_over_tls(args):
    """paho over wss://127.0.0.1:<mqtt.wss_listen>/mqtt and mosquitto over TLS (--cafile) talk
    to each other and to TCP clients; the publishes are stored."""
    pki = make_pki(args.tmp)
    server, tls_port, wss_port = tls_server(args, pki)
    with server:
        with PahoClient(wss_port, "bb-wss", transport="websockets", tls_ca=pki["ca.pem"]) as wss, \
                MosquittoSub(tls_port, "device/#", qos=1,
                             extra_args=["--cafile", pki["ca.pem"]]) as tls_sub, \
                MosquittoSub(server.mqtt_port, "device/#", qos=1) as tcp_sub:
            tls_sub.wait_subscribed()
            tcp_sub.wait_subscribed()
            wss.subscribe("device/#", 1)
            wss.publish("device/wss-side", json.dumps({"value": 1}), qos=1)
            mosquitto_pub(tls_port, "device/tls-side", json.dumps({"value": 2}), qos=1,
                          extra_args=["--cafile", pki["ca.pem"]])
            expected = [("device/wss-side", 1), ("device/tls-side", 2)]
            for name, sub in [("TLS", tls_sub), ("TCP", tcp_sub)]:
                got = sub.wait_messages(2)
                check_equal([(m[2], json.loads(m[3])["value"]) for m in got], expected,
                            "messages at the %s subscriber" % name)
            msgs = wss.wait_messages(2)
            check_equal([(m.topic, json.loads(m.payload)["value"]) for m in msgs], expected,
                        "messages at the WebSocket-over-TLS subscriber")
            wss.disconnect()
        check_equal([m["fields"].get("value") for m in server.all_messages("wss-side")], [1],
                    "stored values of wss-side")
        check_equal([m["fields"].get("value") for m in server.all_messages("tls-side")], [2],
                    "stored values of tls-side")


def test_required_client_certificate(args):
    """With mqtt.tls_require_client_cert, paho over wss and mosquitto over TLS get in with the
    CA's client certificate and not without one; the server carries on."""
    pki = make_pki(args.tmp)
    server, tls_port, wss_port = tls_server(args, pki, require_client_cert=True)
    with server:
        cert = {"tls_cert": pki["client.pem"], "tls_key": pki["client.key"]}
        with PahoClient(wss_port, "bb-wss-cert", transport="websockets", tls_ca=pki["ca.pem"],
                        **cert) as wss:
            wss.publish("device/cert-side", json.dumps({"value": 3}), qos=1)
            wss.disconnect()
        refused = False
        try:
            with PahoClient(wss_port, "bb-wss-nocert", transport="websockets",
                            tls_ca=pki["ca.pem"], connect=False) as bad:
                bad.connect(timeout=10)
        except (ssl.SSLError, OSError, TestFailure):
            refused = True
        check(refused, "a WebSocket-over-TLS client without a certificate was let in")
        result = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(tls_port),
                                 "--cafile", pki["ca.pem"], "-t", "device/x", "-m", "no"],
                                capture_output=True, timeout=30)
        check(result.returncode != 0, "mosquitto_pub without a certificate was let in")
        mosquitto_pub(tls_port, "device/cert-side", json.dumps({"value": 4}), qos=1,
                      extra_args=["--cafile", pki["ca.pem"], "--cert", pki["client.pem"],
                                  "--key", pki["client.key"]])
        check_equal([m["fields"].get("value") for m in server.all_messages("cert-side")], [3, 4],
                    "stored values of cert-side")
        check_equal(server.health()["status"], "ok", "health status after refused handshakes")


if __name__ == "__main__":
    ternlib.run_cases([
        test_websocket_on_the_http_port,
        test_websocket_and_mqtt_over_tls,
        test_required_client_certificate,
    ], __doc__)
