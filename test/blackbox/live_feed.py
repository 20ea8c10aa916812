#!/usr/bin/python3
"""The live feed, black-box: the real `tern serve`, a WebSocket client (RFC 6455, written here on
the standard library, since Debian's python3-websocket is not installed) on /api/v1/live, and
mosquitto_pub publishing the data. Checks that a subscribed device's records arrive as they are
stored, that other devices' do not, that a bad token is refused before the upgrade, and that
/api/v1/health counts the connection."""

import base64
import json
import os
import socket
import struct
import sys
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ternlib  # noqa: E402
from ternlib import TernServer, TestFailure, check, check_equal, mosquitto_pub  # noqa: E402

READ_TIMEOUT = 20.0


class WebSocket:
    """A minimal client: text messages, masked as RFC 6455 requires of clients."""

    def __init__(self, port, target):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (target, port, key))
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        header, _, self.pending = head.partition(b"\r\n\r\n")
        self.status = int(header.split(b" ", 2)[1]) if header else 0

    def _read_exact(self, n):
        while len(self.pending) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise TestFailure("the server closed the live connection")
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def send_text(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_message(self):
        """The next text message as parsed JSON (control frames skipped, pings answered)."""
        while True:
            first, second = self._read_exact(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            payload = self._read_exact(length)
            opcode = first & 0x0F
            check(first & 0x80, "fragmented messages are not expected here")
            if opcode == 0x1:
                return json.loads(payload.decode())
            if opcode == 0x8:
                raise TestFailure("the server closed the live connection: %r" % payload)
            if opcode == 0x9:  # ping → pong with the same payload
                mask = os.urandom(4)
                self.sock.sendall(bytes([0x8A, 0x80 | length]) + mask +
                                  bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self):
        self.sock.close()


def token_of(server):
    password = server.admin_password()
    check(password is not None, "tern printed no first admin password")
    return server.login("admin", password)["access_token"]


def test_records_arrive_as_stored(args):
    with TernServer(args.tern, os.path.join(args.tmp, "data")).start() as server:
        token = token_of(server)
        ws = WebSocket(server.http_port,
                       "/api/v1/live?access_token=" + urllib.parse.quote(token))
        check_equal(ws.status, 101, "status of the live upgrade")
        ws.send_text(json.dumps({"op": "subscribe", "devices": ["live-1"]}))
        reply = ws.read_message()
        check_equal(reply.get("type"), "subscribed", "reply to subscribe")
        check_equal(reply.get("devices"), ["live-1"], "subscribed devices")
        health = server.health()
        check_equal(health.get("live", {}).get("sessions"), 1, "health live.sessions")

        mosquitto_pub(server.mqtt_port, "device/other", '{"value": 1}', qos=1)
        for value in (21, 22, 23):
            mosquitto_pub(server.mqtt_port, "device/live-1", '{"value": %d}' % value, qos=1)
        seen = []
        while len(seen) < 3:
            message = ws.read_message()
            check_equal(message.get("type"), "records", "message type")
            for record in message["records"]:
                check_equal(record["device"], "live-1", "only the subscribed device")
                check_equal(record["topic"], "device/live-1", "topic")
                check_equal(record["node"], "bb-node", "node")
                ternlib.parse_rfc3339(record["ts"])
                seen.append(record["fields"]["value"])
        check_equal(seen, [21, 22, 23], "values in commit order")
        # The records were stored before they were sent.
        check_equal(server.message_count("live-1"), 3, "stored messages of live-1")
        ws.close()


def test_bad_credentials_are_refused_before_the_upgrade(args):
    with TernServer(args.tern, os.path.join(args.tmp, "data")).start() as server:
        ws = WebSocket(server.http_port, "/api/v1/live?access_token=not-a-token")
        check_equal(ws.status, 401, "status with a bad token")
        ws.close()
        ws = WebSocket(server.http_port, "/api/v1/live")
        check_equal(ws.status, 401, "status without a token")
        ws.close()


if __name__ == "__main__":
    ternlib.run_cases([
        test_records_arrive_as_stored,
        test_bad_credentials_are_refused_before_the_upgrade,
    ], __doc__)
