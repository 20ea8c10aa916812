#!/usr/bin/env bash
# Cost of broker persistence on the QoS 1 path: the throughput phase of tern-bench-mqtt against
# `tern serve` with mqtt.persistence off, on without persistent subscribers, and on with one
# persistent-session subscriber online (mosquitto_sub -c -q 1 -t 'device/#': every message is a
# copy for a persistent session, written to broker.db before the publisher's PUBACK).
#
#   bench/ingest/persistence.sh       (BUILD_DIR=build, BENCH_SECONDS=15, BENCH_ROUNDS=2)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
SECONDS_TP="${BENCH_SECONDS:-15}"
ROUNDS="${BENCH_ROUNDS:-2}"
TERN="$BUILD_DIR/tern"
BENCH="$BUILD_DIR/tern-bench-mqtt"
[[ -x "$TERN" && -x "$BENCH" ]] || { echo "build $TERN and $BENCH first" >&2; exit 1; }
command -v mosquitto_sub >/dev/null || { echo "mosquitto_sub not found" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-persist.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # port pid
  for _ in $(seq 150); do
    kill -0 "$2" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr)"
echo "date:    $(date -u '+%Y-%m-%dT%H:%M:%SZ'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load:    100 conns x 20 in flight, QoS 1, 100 B JSON to device/<uuid>, ${SECONDS_TP}s, rounds=$ROUNDS"

run_case() {  # name persistence(true|false) subscriber(0|1)
  local name=$1 persist=$2 sub=$3 data="$TMP/data-$1-$RANDOM" port http pid subpid="" line
  port="$(free_port)"
  http="$(free_port)"
  TERN_MQTT_PERSISTENCE="$persist" TERN_TRACKERS_ENABLED="" "$TERN" serve --data-dir "$data" \
    --mqtt-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$http" --log-level warn \
    >"$TMP/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "$port" "$pid" || { cat "$TMP/$name.log" >&2; echo "tern did not start" >&2; exit 1; }
  if [[ "$sub" == 1 ]]; then
    mosquitto_sub -h 127.0.0.1 -p "$port" -c -i bench-keeper -q 1 -t 'device/#' >/dev/null &
    subpid=$!
    PIDS+=("$subpid")
    sleep 1
  fi
  line="$("$BENCH" throughput --broker "127.0.0.1:$port" --label "$name" -d "$SECONDS_TP" \
    2>>"$TMP/bench.log" | grep '^RESULT' || echo "RESULT broker=$name status=failed")"
  local health
  health="$(curl -s --max-time 5 "http://127.0.0.1:$http/api/v1/health" || echo '{}')"
  echo "$line broker_state=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("broker_state",{}))' "$health" | tr -d ' ')"
  [[ -n "$subpid" ]] && kill "$subpid" 2>/dev/null || true
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
  run_case "persistence-off" false 0
  run_case "persistence-on" true 0
  run_case "persistent-subscriber" true 1
done
