#!/usr/bin/python3
"""Crash safety, black-box: a PUBACK means the message is on disk. A paho QoS 1 publisher
floods device/crash; after >= 2000 acknowledgements the server gets SIGKILL; after a restart
on the same data directory every acknowledged message must be readable through the API.
Three kill cycles on one data directory, acknowledged sequence numbers accumulating."""

import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import TernServer, TestFailure, check, check_equal  # noqa: E402

DEVICE = "crash"
CYCLES = 3
ACKS_BEFORE_KILL = 2000
ACK_WAIT_LIMIT = 60.0  # seconds to reach ACKS_BEFORE_KILL
MAX_OUTSTANDING = 200  # unacknowledged messages the publisher lets pile up in paho
MAX_PER_CYCLE = 2_000_000  # hard bound on messages per cycle


class Publisher:
    """A paho QoS 1 publisher on its own thread. `acked` holds the seq of every message whose
    PUBACK came back (on_publish, mid → seq)."""

    def __init__(self, port, first_seq):
        import paho.mqtt.client as mqtt
        self.mqtt = mqtt
        self.next_seq = first_seq
        self.lock = threading.Lock()
        self.mid_to_seq = {}
        self.early_acks = []  # mids whose PUBACK arrived before publish() returned
        self.acked = set()
        self.ack_count = 0
        self.published = 0
        self.connected = threading.Event()
        self.stop_flag = threading.Event()
        self.window = threading.BoundedSemaphore(MAX_OUTSTANDING)
        self.error = None
        self.client = mqtt.Client(client_id="bb-crash-%d" % first_seq, clean_session=True,
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(20)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_connect(self, client, userdata, flags, rc):
        if rc == 0:
            self.connected.set()

    def _on_publish(self, client, userdata, mid):
        # Runs on paho's thread while paho holds its message lock, so publish() in the other
        # thread may not have returned yet: a mid not yet mapped is resolved there.
        with self.lock:
            seq = self.mid_to_seq.pop(mid, None)
            if seq is None:
                self.early_acks.append(mid)
            else:
                self.acked.add(seq)
            self.ack_count += 1
        try:
            self.window.release()
        except ValueError:
            pass

    def start(self):
        if not self.connected.wait(ternlib.DEFAULT_TIMEOUT):
            raise TestFailure("crash publisher did not connect")
        self.thread.start()

    def _run(self):
        try:
            for _ in range(MAX_PER_CYCLE):
                while not self.window.acquire(timeout=0.1):
                    if self.stop_flag.is_set():
                        return
                if self.stop_flag.is_set():
                    return
                seq = self.next_seq
                payload = json.dumps({"seq": seq, "value": seq})
                info = self.client.publish("device/" + DEVICE, payload, qos=1)
                with self.lock:
                    self.next_seq += 1
                    self.published += 1
                    if info.mid in self.early_acks:
                        self.early_acks.remove(info.mid)
                        self.acked.add(seq)
                    else:
                        self.mid_to_seq[info.mid] = seq
                if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                    return  # the connection is gone (the server was killed)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=ternlib.DEFAULT_TIMEOUT)
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()
        check(not self.thread.is_alive(), "publisher thread did not stop")
        if self.error is not None:
            raise TestFailure("publisher thread failed: %r" % (self.error,))
        with self.lock:
            return set(self.acked), self.next_seq


def stored_seqs(server):
    messages = server.all_messages(DEVICE, limit=10000)
    seqs = []
    for m in messages:
        fields = m.get("fields") or {}
        check(type(fields.get("seq")) is int,
              "stored message without an integer fields.seq: %r" % (m,))
        check_equal(fields.get("value"), fields["seq"], "fields.value of seq %d" % fields["seq"])
        seqs.append(fields["seq"])
    return seqs


def verify(server, acked, next_seq, label):
    seqs = stored_seqs(server)
    present = set(seqs)
    missing = sorted(acked - present)
    if missing:
        shown = ", ".join(str(s) for s in missing[:50])
        raise TestFailure("%s: %d acknowledged message(s) lost after SIGKILL: seq %s%s" %
                          (label, len(missing), shown, " ..." if len(missing) > 50 else ""))
    unexpected = sorted(s for s in present if s < 0 or s >= next_seq)
    check(not unexpected, "%s: stored seqs that were never published: %r" %
          (label, unexpected[:20]))
    ternlib.log("%s: %d acknowledged seqs all present (%d stored rows, %d distinct, "
                "%d duplicates, %d unacknowledged stored)" %
                (label, len(acked), len(seqs), len(present), len(seqs) - len(present),
                 len(present - acked)))
    count = server.message_count(DEVICE) if seqs else 0
    check_equal(count, len(seqs), "%s: message_count vs. rows returned by the API" % label)


def test_kill9_keeps_acknowledged_messages(args):
    data_dir = os.path.join(args.tmp, "data")
    acked = set()
    next_seq = 0
    server = TernServer(args.tern, data_dir, node_id="bb-crash")
    try:
        for cycle in range(1, CYCLES + 1):
            server.start()
            if cycle > 1:
                verify(server, acked, next_seq, "restart before cycle %d" % cycle)
            publisher = Publisher(server.mqtt_port, next_seq)
            try:
                publisher.start()
                deadline = time.monotonic() + ACK_WAIT_LIMIT
                while publisher.ack_count < ACKS_BEFORE_KILL:
                    check(time.monotonic() < deadline,
                          "cycle %d: only %d acknowledgements within %.0f s (need %d)" %
                          (cycle, publisher.ack_count, ACK_WAIT_LIMIT, ACKS_BEFORE_KILL))
                    check(server.running(), "cycle %d: server died on its own" % cycle)
                    time.sleep(0.01)
                server.kill9()
            finally:
                cycle_acked, next_seq = publisher.stop()
            check(len(cycle_acked) >= ACKS_BEFORE_KILL,
                  "cycle %d: %d acked seqs recorded, expected >= %d" %
                  (cycle, len(cycle_acked), ACKS_BEFORE_KILL))
            acked |= cycle_acked
            ternlib.log("cycle %d: published up to seq %d, %d acknowledged this cycle, %d total" %
                        (cycle, next_seq - 1, len(cycle_acked), len(acked)))

        server.start()
        verify(server, acked, next_seq, "final restart after %d kills" % CYCLES)
        server.stop()
    finally:
        server.kill()


if __name__ == "__main__":
    ternlib.run_cases([test_kill9_keeps_acknowledged_messages], __doc__)
