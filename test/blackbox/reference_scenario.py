#!/usr/bin/python3
"""The reference deployment, black-box: `tern serve --node-id gw-test-1` plus
`tern sim mqtt --devices 3 --rate 0.05 --qos 1 --count 40`, then every message checked via the
HTTP API (paginated with a small page size)."""

import datetime
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import TernServer, TestFailure, check, check_equal  # noqa: E402

NODE = "gw-test-1"
DEVICES = 3
COUNT = 40
PAGE = 7
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SUMMARY_RE = re.compile(r"sent=(\d+) acked=(\d+) errors=(\d+) reconnects=(\d+) elapsed=\S+ rate=\S+")
SIM_TIMEOUT = 180


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def run_sim(args, port):
    cmd = [args.tern, "sim", "mqtt", "--broker", "127.0.0.1:%d" % port, "--devices", str(DEVICES),
           "--rate", "0.05", "--qos", "1", "--count", str(COUNT)]
    ternlib.log("running: %s" % " ".join(cmd))
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=SIM_TIMEOUT,
                                stdin=subprocess.DEVNULL, env=ternlib.clean_env())
    except subprocess.TimeoutExpired as e:
        raise TestFailure("tern sim mqtt did not finish within %d s; stdout: %r stderr: %r" %
                          (SIM_TIMEOUT, e.stdout, e.stderr)) from None
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    ternlib.log("sim exit %d, stdout: %s" % (result.returncode, stdout.strip()))
    summaries = [l for l in stdout.splitlines() if SUMMARY_RE.search(l)]
    check(len(summaries) == 1, "expected one summary line on the sim's stdout, got %r (stderr: %s)" %
          (stdout, stderr[-2000:]))
    sent, acked, errors, reconnects = (int(x) for x in SUMMARY_RE.search(summaries[0]).groups())
    check_equal(result.returncode, 0, "tern sim mqtt exit status (stderr: %s)" % stderr[-2000:])
    return {"sent": sent, "acked": acked, "errors": errors, "reconnects": reconnects}


def check_message(device_id, m, window_start, window_end, where):
    check_equal(m.get("node"), NODE, "%s: node" % where)
    check_equal(m.get("topic"), "device/" + device_id, "%s: topic" % where)
    fields = m.get("fields")
    check(isinstance(fields, dict), "%s: fields is not an object: %r" % (where, m))
    check_equal(fields.get("uuid"), device_id, "%s: fields.uuid" % where)
    value = fields.get("value")
    check(type(value) is int and 20 <= value <= 30,
          "%s: fields.value must be an integer in [20, 30], got %r" % (where, value))
    check_equal(m.get("json"), True, "%s: json flag" % where)
    check_equal(m.get("payload_encoding"), "utf8", "%s: payload_encoding" % where)
    check(isinstance(m.get("id"), int), "%s: id must be an integer, got %r" % (where, m.get("id")))
    ts = ternlib.parse_rfc3339(m.get("ts"))
    check(window_start <= ts <= window_end,
          "%s: ts %s outside the test's run window [%s, %s]" %
          (where, m.get("ts"), window_start.isoformat(), window_end.isoformat()))
    return ts


def test_reference_scenario(args):
    # Whole seconds and a second of slack: the API prints milliseconds, the window is a sanity
    # check of the clock and time zone, not a timing assertion.
    window_start = utc_now().replace(microsecond=0) - datetime.timedelta(seconds=1)
    with TernServer(args.tern, os.path.join(args.tmp, "data"), node_id=NODE) as server:
        server.start()
        check_equal(server.health().get("node"), NODE, "health node")
        summary = run_sim(args, server.mqtt_port)
        check_equal((summary["sent"], summary["acked"], summary["errors"]),
                    (DEVICES * COUNT, DEVICES * COUNT, 0), "sim summary (sent, acked, errors)")
        broker = server.health().get("broker") or {}
        check_equal(broker.get("messages_dropped"), 0,
                    "health broker.messages_dropped (no subscriber, nothing to drop)")

        devices = server.devices()
        window_end = utc_now() + datetime.timedelta(seconds=1)
        ids = sorted(d.get("id") for d in devices)
        check_equal(len(devices), DEVICES, "number of devices in GET /api/v1/devices (%r)" % ids)
        check_equal(len(set(ids)), DEVICES, "distinct device ids")
        for d in devices:
            check(isinstance(d.get("id"), str) and UUID_RE.match(d["id"]),
                  "device id %r is not a lower-case UUID" % (d.get("id"),))
            check_equal(d.get("message_count"), COUNT, "message_count of %s" % d["id"])
            first = ternlib.parse_rfc3339(d.get("first_seen"))
            last = ternlib.parse_rfc3339(d.get("last_seen"))
            check(window_start <= first <= last <= window_end,
                  "device %s: first_seen %s / last_seen %s not ordered inside the run window" %
                  (d["id"], d.get("first_seen"), d.get("last_seen")))
            latest = d.get("latest") or {}
            check_equal(latest.get("uuid"), d["id"], "latest.uuid of %s" % d["id"])
            check(type(latest.get("value")) is int and 20 <= latest["value"] <= 30,
                  "latest.value of %s: %r" % (d["id"], latest.get("value")))

        total = 0
        all_ids = set()
        for device_id in ids:
            messages = server.all_messages(device_id, limit=PAGE)
            check_equal(len(messages), COUNT, "messages of %s fetched with limit=%d" %
                        (device_id, PAGE))
            previous = None
            for i, m in enumerate(messages):
                ts = check_message(device_id, m, window_start, window_end,
                                   "device %s message %d" % (device_id, i))
                check(previous is None or previous <= ts,
                      "device %s: messages not in ascending ts order at %d" % (device_id, i))
                previous = ts
            message_ids = [m["id"] for m in messages]
            check_equal(len(set(message_ids)), COUNT,
                        "distinct message ids of %s (pagination duplicated or lost some)" %
                        device_id)
            all_ids.update(message_ids)
            # Paging backwards gives the same set, newest first.
            desc = server.all_messages(device_id, limit=PAGE, extra_params={"order": "desc"})
            check_equal([m["id"] for m in desc], message_ids[::-1],
                        "message ids of %s with order=desc" % device_id)
            total += len(messages)
        check_equal(len(all_ids), total, "message ids unique across devices")
        check_equal(total, summary["acked"], "messages stored across devices vs. the sim's acked")

        server.stop()


if __name__ == "__main__":
    ternlib.run_cases([test_reference_scenario], __doc__)
