#!/usr/bin/python3
"""The `tern` command line, black-box: --version/--help, bad configuration values (exit 2 with
one line naming the key), precedence flags > environment > file, JSON logs, and a clean stop on
SIGINT and SIGTERM that leaves a database which reopens with the data."""

import json
import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import (MosquittoSub, TernServer, TestFailure, check, check_equal,  # noqa: E402
                     clean_env, free_port, mosquitto_pub)

RUN_TIMEOUT = 30


def run_tern(args, argv, env=None, timeout=RUN_TIMEOUT):
    """Runs tern to completion (it must exit by itself) → (code, stdout, stderr)."""
    cmd = [args.tern] + argv
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                env=env if env is not None else clean_env(), cwd=args.tmp)
    except subprocess.TimeoutExpired:
        # subprocess.run kills the child on timeout.
        raise TestFailure("%s did not exit within %d s (did it start serving?)" %
                          (" ".join(cmd), timeout)) from None
    return (result.returncode, result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"))


def write_file(args, name, text):
    path = os.path.join(args.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def serve_argv(args, *extra, mqtt_listen=None, http_listen=None):
    """`serve` on free loopback ports and a temp data dir, so a wrongly accepted configuration
    cannot clash with anything."""
    return ["serve", "--data-dir", os.path.join(args.tmp, "data"),
            "--mqtt-listen", mqtt_listen or "127.0.0.1:%d" % free_port(),
            "--http-listen", http_listen or "127.0.0.1:%d" % free_port()] + list(extra)


def test_version_and_help(args):
    code, out, err = run_tern(args, ["--version"])
    check_equal(code, 0, "tern --version exit status (stderr %r)" % err)
    check(re.search(r"\d+\.\d+\.\d+", out), "tern --version printed no version: %r" % out)
    ternlib.log("tern --version: %s" % out.strip())

    code, out, err = run_tern(args, ["--help"])
    check_equal(code, 0, "tern --help exit status")
    check("serve" in out + err and "sim" in out + err,
          "tern --help does not list the serve and sim commands: %r" % (out + err))

    code, out, err = run_tern(args, ["serve", "--help"])
    check_equal(code, 0, "tern serve --help exit status")
    for flag in ("--data-dir", "--mqtt-listen", "--http-listen", "--node-id", "--config"):
        check(flag in out + err, "tern serve --help does not mention %s: %r" % (flag, out + err))

    code, out, err = run_tern(args, ["no-such-command"])
    check_equal(code, 2, "exit status of an unknown subcommand")


def expect_config_error(args, what, argv, env=None, names=()):
    """tern must exit 2 with exactly one line on stderr naming one of `names`."""
    code, out, err = run_tern(args, argv, env=env)
    check_equal(code, 2, "%s: exit status (stderr %r)" % (what, err))
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1, "%s: expected exactly one line on stderr, got %d: %r" %
          (what, len(lines), err))
    check(any(n.lower() in lines[0].lower() for n in names),
          "%s: the error line does not name the key (any of %r): %r" % (what, names, lines[0]))
    ternlib.log("%s → %s" % (what, lines[0]))


def test_bad_values_exit_2(args):
    expect_config_error(args, "--mqtt-listen nonsense",
                        serve_argv(args, mqtt_listen="nonsense"),
                        names=("mqtt.listen", "--mqtt-listen"))
    expect_config_error(args, "--http-listen 127.0.0.1:99999",
                        serve_argv(args, http_listen="127.0.0.1:99999"),
                        names=("http.listen", "--http-listen"))
    expect_config_error(args, "--threads many", serve_argv(args, "--threads", "many"),
                        names=("server.threads", "--threads"))
    expect_config_error(args, "--log-format xml", serve_argv(args, "--log-format", "xml"),
                        names=("server.log_format", "--log-format"))
    expect_config_error(args, "TERN_MQTT_MAX_INFLIGHT=abc", serve_argv(args),
                        env=clean_env({"TERN_MQTT_MAX_INFLIGHT": "abc"}),
                        names=("mqtt.max_inflight", "TERN_MQTT_MAX_INFLIGHT"))
    expect_config_error(args, "TERN_MQTT_MAX_INFLITE=5 (unknown variable)", serve_argv(args),
                        env=clean_env({"TERN_MQTT_MAX_INFLITE": "5"}),
                        names=("TERN_MQTT_MAX_INFLITE", "mqtt.max_inflite"))
    path = write_file(args, "bad-type.toml", '[mqtt]\nmax_inflight = "x"\n')
    expect_config_error(args, "TOML max_inflight = \"x\"", serve_argv(args, "--config", path),
                        names=("mqtt.max_inflight",))
    path = write_file(args, "unknown-key.toml", "[mqtt]\nmax_inflite = 5\n")
    expect_config_error(args, "TOML unknown key", serve_argv(args, "--config", path),
                        names=("max_inflite",))
    path = write_file(args, "unknown-section.toml", "[mqqt]\nmax_inflight = 5\n")
    expect_config_error(args, "TOML unknown section", serve_argv(args, "--config", path),
                        names=("mqqt",))
    path = write_file(args, "syntax.toml", "[mqtt\nmax_inflight = 5\n")
    code, _, err = run_tern(args, serve_argv(args, "--config", path))
    check_equal(code, 2, "TOML syntax error: exit status (stderr %r)" % err)
    check_equal(len([l for l in err.splitlines() if l.strip()]), 1,
                "TOML syntax error: lines on stderr (%r)" % err)


def test_precedence_flag_env_file(args):
    config = write_file(args, "tern.toml", '[server]\nnode_id = "file"\n')
    data = os.path.join(args.tmp, "data")
    cases = [
        ("flag", "flag", {"TERN_SERVER_NODE_ID": "env"}),
        ("env", None, {"TERN_SERVER_NODE_ID": "env"}),
        ("file", None, {}),
    ]
    for expected, flag, env in cases:
        server = TernServer(args.tern, data, node_id=flag, extra_args=["--config", config],
                            env=clean_env(env), name="tern-" + expected)
        with server:
            server.start()
            check_equal(server.health().get("node"), expected,
                        "health node with file=file, env=%s, flag=%s" %
                        (env.get("TERN_SERVER_NODE_ID"), flag))
            server.stop()
    # The node id is also what gets stored with each record.
    with TernServer(args.tern, data, node_id=None, extra_args=["--config", config],
                    env=clean_env({"TERN_SERVER_NODE_ID": "env"}), name="tern-store") as server:
        server.start()
        mosquitto_pub(server.mqtt_port, "device/prec", message='{"v":1}', qos=1)
        check_equal([m.get("node") for m in server.all_messages("prec")], ["env"],
                    "node stored with the record")
        server.stop()


def test_docs_and_openapi_are_served(args):
    """The real binary carries the OpenAPI document and Swagger UI's files (npm swagger-ui-dist,
    compiled in at build time); both are public."""
    with TernServer(args.tern, os.path.join(args.tmp, "data-docs"), node_id="bb-docs") as server:
        server.start()
        status, raw, headers = ternlib.http_get(server.url("/api/v1/openapi.json"))
        check_equal(status, 200, "GET /api/v1/openapi.json without credentials")
        doc = json.loads(raw)
        check(doc.get("openapi", "").startswith("3.1."), "openapi version %r" % doc.get("openapi"))
        check("/api/v1/devices" in doc.get("paths", {}), "the document lists /api/v1/devices")
        status, raw, headers = ternlib.http_get(server.url("/docs"), headers={"Accept": "text/html"})
        check_equal(status, 200, "GET /docs")
        check(headers.get("Content-Type", "").startswith("text/html"), "/docs is HTML")
        check(b"/docs/swagger-ui-bundle.js" in raw and b"/api/v1/openapi.json" in raw,
              "/docs loads the bundle and the document")
        status, raw, headers = ternlib.http_get(server.url("/docs/swagger-ui-bundle.js"),
                                                headers={"Accept": "*/*"})
        check_equal(status, 200, "GET /docs/swagger-ui-bundle.js")
        check(headers.get("Content-Type", "").startswith("application/javascript"),
              "bundle content type %r" % headers.get("Content-Type"))
        check(len(raw) > 500000 and b"SwaggerUIBundle" in raw, "the real bundle (%d bytes)" % len(raw))
        server.stop()


def test_json_logs(args):
    with TernServer(args.tern, os.path.join(args.tmp, "data"), node_id="bb-json",
                    extra_args=["--log-format", "json", "--log-level", "debug"]) as server:
        server.start()
        # Some activity worth logging: a client, a bad packet, API requests, an error answer.
        mosquitto_pub(server.mqtt_port, "device/logs", message='{"value": 1}', qos=1)
        mosquitto_pub(server.mqtt_port, "device/logs", message='not "json"\n\x01', qos=1)
        server.get_json("/api/v1/devices")
        ternlib.http_get(server.url("/api/v1/devices/nope/messages?limit=0"))
        ternlib.http_get(server.url("/no/such/path"))
        import socket
        with socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=5) as s:
            s.sendall(b"\xf0\x00")  # reserved packet type: a protocol error
            try:
                s.recv(16)
            except OSError:
                pass
        server.stop(signal.SIGTERM)
        stderr = server.stderr()
    lines = [l for l in stderr.splitlines() if l.strip()]
    check(lines, "no log lines on stderr with --log-format json")
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError as e:
            raise TestFailure("stderr line %d is not JSON (%s): %r" % (i + 1, e, line)) from None
        check(isinstance(record, dict), "stderr line %d is JSON but not an object: %r" %
              (i + 1, line))
    ternlib.log("%d JSON log lines; first: %s" % (len(lines), lines[0]))


def check_stop_and_reopen(args, sig):
    name = signal.Signals(sig).name
    data = os.path.join(args.tmp, "data-" + name)
    device = "sig-" + name.lower()
    payloads = ['{"n":%d,"value":%d}' % (i, 20 + i) for i in range(3)]
    with TernServer(args.tern, data, node_id="bb-" + name.lower(), name="tern-" + name) as server:
        server.start()
        for p in payloads:
            mosquitto_pub(server.mqtt_port, "device/" + device, message=p, qos=1)
        # A subscriber still connected while the server stops must not keep it from exiting.
        with MosquittoSub(server.mqtt_port, "bb/#", qos=1) as sub:
            sub.wait_subscribed()
            server.stop(sig)

    with TernServer(args.tern, data, node_id="bb-reopen", name="tern-reopen-" + name) as server:
        server.start()
        messages = server.all_messages(device)
        check_equal([m.get("payload") for m in messages], payloads,
                    "payloads after stopping with %s and reopening" % name)
        check_equal(server.message_count(device), len(payloads),
                    "message_count after %s" % name)
        server.stop(signal.SIGTERM)


def test_sigint_stops_cleanly(args):
    check_stop_and_reopen(args, signal.SIGINT)


def test_sigterm_stops_cleanly(args):
    check_stop_and_reopen(args, signal.SIGTERM)


if __name__ == "__main__":
    ternlib.run_cases([
        test_version_and_help,
        test_bad_values_exit_2,
        test_precedence_flag_env_file,
        test_json_logs,
        test_docs_and_openapi_are_served,
        test_sigint_stops_cleanly,
        test_sigterm_stops_cleanly,
    ], __doc__)
