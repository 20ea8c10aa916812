#!/usr/bin/env python3
"""Black-box tests of users and authentication: the first-start admin, `tern user add/list/
remove` on the real binary, login/refresh/logout over HTTP, token expiry, the login rate limit,
and the issue 2 acceptance example (publish, then read it back) with a token."""

import json
import os
import subprocess
import time

import ternlib
from ternlib import (TernServer, check, check_equal, clean_env, http_request, mosquitto_pub,
                     run_cases, wait_until)


def tern_user(args, data, *argv, stdin=None, env=None):
    result = subprocess.run([args.tern, "user"] + list(argv) + ["--data-dir", data],
                            input=stdin.encode() if stdin is not None else None,
                            stdin=None if stdin is not None else subprocess.DEVNULL,
                            capture_output=True, env=env or clean_env(), timeout=60)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def login(server, name, password):
    return http_request(server.url("/api/v1/auth/login"), "POST",
                        {"name": name, "password": password})


def bearer(token):
    return {"Authorization": "Bearer " + token}


def test_first_start_creates_an_admin_once(args):
    data = os.path.join(args.tmp, "data")
    with TernServer(args.tern, data, node_id="bb-auth") as server:
        server.start()
        password = server.admin_password()
        check(password, "no admin password on stderr at first start:\n%s" % server.stderr_tail())
        status, body, _ = login(server, "admin", password)
        check_equal(status, 200, "login with the printed password (%s)" % body[:200])
        token = json.loads(body)["access_token"]
        status, body, _ = http_request(server.url("/api/v1/devices"), headers=bearer(token))
        check_equal(status, 200, "GET /api/v1/devices with the token")
        server.stop()
    with TernServer(args.tern, data, node_id="bb-auth", name="tern-again") as server:
        server.start()
        check(server.admin_password() is None,
              "the admin password was printed again on the second start")
        code, out, _ = tern_user(args, data, "list")
        check_equal(code, 0, "tern user list exit status")
        check("admin" in out and "admin" in out.split("\n")[1], "user list: %r" % out)
        server.stop()


def test_cli_users_log_in_and_removal_ends_sessions(args):
    data = os.path.join(args.tmp, "data")
    code, out, err = tern_user(args, data, "add", "alice", "--role", "operator",
                               "--password-stdin", stdin="alice-secret-1\n")
    check_equal(code, 0, "tern user add alice (%s)" % err)
    code, out, err = tern_user(args, data, "add", "gen", "--role", "viewer")
    check_equal(code, 0, "tern user add gen (%s)" % err)
    check("with password " in out, "a generated password is printed: %r" % out)
    generated = out.split("with password ")[1].split()[0]
    code, _, err = tern_user(args, data, "add", "alice", "--password-stdin", stdin="whatever-1\n")
    check_equal(code, 1, "adding alice twice (%s)" % err)
    check("already exists" in err, "duplicate user message: %r" % err)
    code, _, err = tern_user(args, data, "add", "x", "--role", "root")
    check_equal(code, 2, "an unknown role is a usage error (%s)" % err)

    with TernServer(args.tern, data, node_id="bb-auth") as server:
        server.start()
        check(server.admin_password() is None, "an admin was created although users exist")
        status, body, _ = login(server, "alice", "alice-secret-1")
        check_equal(status, 200, "alice logs in (%s)" % body[:200])
        alice = json.loads(body)
        check_equal(alice["user"]["role"], "operator", "alice's role")
        status, body, _ = login(server, "gen", generated)
        check_equal(status, 200, "gen logs in with the generated password (%s)" % body[:200])
        gen = json.loads(body)["access_token"]
        # A viewer may read but not write.
        status, _, _ = http_request(server.url("/api/v1/devices"), headers=bearer(gen))
        check_equal(status, 200, "viewer reads devices")
        status, _, _ = http_request(server.url("/api/v1/devices/d1/commands"), "POST",
                                    {"type": "engineStop"}, headers=bearer(gen))
        check_equal(status, 403, "viewer posts a command")

        # Refresh rotates; logout revokes.
        status, body, _ = http_request(server.url("/api/v1/auth/refresh"), "POST",
                                       {"refresh_token": alice["refresh_token"]})
        check_equal(status, 200, "refresh (%s)" % body[:200])
        rotated = json.loads(body)
        status, _, _ = http_request(server.url("/api/v1/auth/logout"), "POST",
                                    headers=bearer(rotated["access_token"]))
        check_equal(status, 204, "logout")
        status, _, headers = http_request(server.url("/api/v1/devices"),
                                          headers=bearer(rotated["access_token"]))
        check_equal(status, 401, "the logged-out token")
        check(headers.get("WWW-Authenticate", "").startswith("Bearer"), "WWW-Authenticate")

        # Removing a user on the command line (server running) ends its sessions.
        code, out, err = tern_user(args, data, "remove", "gen")
        check_equal(code, 0, "tern user remove gen (%s)" % err)
        wait_until(lambda: http_request(server.url("/api/v1/devices"),
                                        headers=bearer(gen))[0] == 401,
                   30, what="the removed user's token to be refused")
        status, _, _ = login(server, "gen", generated)
        check_equal(status, 401, "the removed user logs in")
        code, _, err = tern_user(args, data, "remove", "gen")
        check_equal(code, 1, "removing gen twice (%s)" % err)
        server.stop()


def test_tokens_expire_and_failed_logins_are_limited(args):
    data = os.path.join(args.tmp, "data")
    env = clean_env({"TERN_API_TOKEN_TTL": "1s", "TERN_API_LOGIN_MAX_FAILURES": "3"})
    with TernServer(args.tern, data, node_id="bb-auth", env=env) as server:
        server.start()
        password = server.admin_password()
        status, body, _ = login(server, "admin", password)
        check_equal(status, 200, "login")
        token = json.loads(body)["access_token"]
        check_equal(json.loads(body)["expires_in"], 1, "expires_in with api.token_ttl = 1s")
        wait_until(lambda: http_request(server.url("/api/v1/devices"),
                                        headers=bearer(token))[0] == 401,
                   30, what="the 1 s token to expire")
        _, body, _ = http_request(server.url("/api/v1/devices"), headers=bearer(token))
        check("expired" in json.loads(body)["detail"], "detail of an expired token: %r" % body)

        for i in range(3):
            status, _, _ = login(server, "admin", "wrong-%d" % i)
            check_equal(status, 401, "failed login %d" % i)
        status, body, headers = login(server, "admin", password)
        check_equal(status, 429, "login after 3 failures (%s)" % body[:200])
        retry = int(headers.get("Retry-After", "0"))
        check(1 <= retry <= 60, "Retry-After %r" % headers.get("Retry-After"))
        server.stop()


def test_acceptance_example_with_a_token(args):
    """Issue 2's example, with the README's token steps: publish at QoS 1, read it back."""
    with TernServer(args.tern, os.path.join(args.tmp, "data"), node_id="bb-auth") as server:
        server.start()
        mosquitto_pub(server.mqtt_port, "device/abc", message='{"uuid":"abc","value":25}', qos=1)
        status, body, _ = login(server, "admin", server.admin_password())
        token = json.loads(body)["access_token"]
        for path in ("/api/v1/devices/abc/messages", "/api/v1/devices"):
            result = subprocess.run(["curl", "-s", "-H", "Authorization: Bearer " + token,
                                     server.url(path)], capture_output=True, timeout=30)
            check_equal(result.returncode, 0, "curl %s" % path)
            check('"value":25' in result.stdout.decode(), "%s: %r" % (path, result.stdout[:300]))
        result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 server.url("/api/v1/devices/abc/messages")],
                                capture_output=True, timeout=30)
        check_equal(result.stdout.decode(), "401", "the same request without a token")
        server.stop()


if __name__ == "__main__":
    run_cases([test_first_start_creates_an_admin_once,
               test_cli_users_log_in_and_removal_ends_sessions,
               test_tokens_expire_and_failed_logins_are_limited,
               test_acceptance_example_with_a_token],
              "users and authentication")
