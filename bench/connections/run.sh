#!/usr/bin/env bash
# Connection benchmark: 15,000 idle MQTT connections with keepalive, held 60 s, against Tern and
# against Debian's Mosquitto, one after the other in the same run, loopback only. Measures the
# connect rate and the broker's memory per connection (resident set growth ÷ connections).
#
#   bench/connections/run.sh
#
# Knobs (environment):
#   BENCH_CONNECTIONS=15000   connections held (this machine allows 20,000 descriptors a process)
#   BENCH_HOLD=60             seconds held once all are up
#   BENCH_KEEPALIVE=60        MQTT keepalive; every client pings every half of it
#   BENCH_MQTT_VERSION=4      4 (3.1.1) or 5
#   BENCH_KEEP=0              1: keep the temp dir (logs) afterwards
#   BUILD_DIR=build           where tern and tern-bench-connections are
#   MOSQUITTO=/usr/sbin/mosquitto
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
CONNECTIONS="${BENCH_CONNECTIONS:-15000}"
HOLD="${BENCH_HOLD:-60}"
KEEPALIVE="${BENCH_KEEPALIVE:-60}"
VERSION="${BENCH_MQTT_VERSION:-4}"
KEEP="${BENCH_KEEP:-0}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
TERN="$BUILD_DIR/tern"
BENCH="$BUILD_DIR/tern-bench-connections"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

if [[ ! -x "$TERN" || ! -x "$BENCH" ]]; then
  log "building ($TERN or $BENCH missing)"
  make -C "$ROOT" build BUILD_DIR="$BUILD_DIR" >&2
fi
[[ -x "$MOSQUITTO" ]] || die "$MOSQUITTO not found (apt-get install mosquitto)"

# Both brokers and the client need a descriptor per connection, plus some.
NEED=$(( CONNECTIONS + 100 ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= NEED )) || die "open file limit $(ulimit -n) < $NEED needed"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-conn.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r P_TERN_MQTT P_TERN_HTTP P_MOSQ < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()')

wait_port() {  # host port seconds pid
  local i
  for i in $(seq $(( $3 * 10 ))); do
    kill -0 "$4" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
stop() {  # pid: graceful, bounded
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

CPU_MODEL="$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
MOSQ_VERSION="$({ "$MOSQUITTO" -h 2>/dev/null || true; } | awk '/version/{print $3; exit}')"
echo "== Tern connection benchmark =="
echo "commit:    $COMMIT"
echo "machine:   $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(awk '{printf "%.1f GiB", $2/1048576}' <(grep MemTotal /proc/meminfo)), $(uname -sr)"
echo "date:      $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "load:      $CONNECTIONS idle connections, MQTT level $VERSION, keepalive ${KEEPALIVE}s, held ${HOLD}s; brokers run one after the other"
echo "loadavg:   $(cut -d' ' -f1-3 /proc/loadavg) before start"

# --- Tern ---------------------------------------------------------------------------------------
export TERN_MQTT_MAX_CONNECTIONS=$(( CONNECTIONS + 100 ))
"$TERN" serve --data-dir "$TMP/tern-data" --mqtt-listen "127.0.0.1:$P_TERN_MQTT" \
  --http-listen "127.0.0.1:$P_TERN_HTTP" --log-level warn >"$TMP/tern.log" 2>&1 &
TERN_PID=$!
PIDS+=("$TERN_PID")
wait_port 127.0.0.1 "$P_TERN_MQTT" 20 "$TERN_PID" || { cat "$TMP/tern.log" >&2; die "tern did not start"; }
sleep 1
TERN_LINE="$("$BENCH" --broker "127.0.0.1:$P_TERN_MQTT" --label tern --connections "$CONNECTIONS" \
  --hold "$HOLD" --keepalive "$KEEPALIVE" --mqtt-version "$VERSION" --pid "$TERN_PID" \
  2>>"$TMP/bench.log" | grep '^RESULT' || echo 'RESULT broker=tern status=failed')"
echo "$TERN_LINE"
stop "$TERN_PID"

# --- Mosquitto ----------------------------------------------------------------------------------
cat >"$TMP/mosquitto.conf" <<CONF
listener $P_MOSQ 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
log_dest stderr
log_type error
log_type warning
CONF
"$MOSQUITTO" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
MOSQ_PID=$!
PIDS+=("$MOSQ_PID")
wait_port 127.0.0.1 "$P_MOSQ" 20 "$MOSQ_PID" || { cat "$TMP/mosquitto.log" >&2; die "mosquitto did not start"; }
sleep 1
MOSQ_LINE="$("$BENCH" --broker "127.0.0.1:$P_MOSQ" --label mosquitto --connections "$CONNECTIONS" \
  --hold "$HOLD" --keepalive "$KEEPALIVE" --mqtt-version "$VERSION" --pid "$MOSQ_PID" \
  2>>"$TMP/bench.log" | grep '^RESULT' || echo 'RESULT broker=mosquitto status=failed')"
echo "$MOSQ_LINE"
stop "$MOSQ_PID"

# --- summary ------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && a != "") printf "%.2f", a/b; else printf "-" }'; }
kib() { awk -v b="$1" 'BEGIN{ if (b != "" && b+0 >= 0) printf "%.2f", b/1024; else printf "-" }'; }
row() { printf "%-34s %14s %14s %14s\n" "$@"; }
echo
row "" "tern" "mosquitto ${MOSQ_VERSION:-}" "tern/mosquitto"
row "status" "$(field "$TERN_LINE" status)" "$(field "$MOSQ_LINE" status)" ""
row "connected" "$(field "$TERN_LINE" connected)" "$(field "$MOSQ_LINE" connected)" ""
row "connect rate (conn/s)" "$(field "$TERN_LINE" connect_rate)" "$(field "$MOSQ_LINE" connect_rate)" \
  "$(ratio "$(field "$TERN_LINE" connect_rate)" "$(field "$MOSQ_LINE" connect_rate)")"
row "RSS before (KiB)" "$(field "$TERN_LINE" rss_before_kib)" "$(field "$MOSQ_LINE" rss_before_kib)" ""
row "RSS after hold (KiB)" "$(field "$TERN_LINE" rss_held_kib)" "$(field "$MOSQ_LINE" rss_held_kib)" ""
T_B="$(field "$TERN_LINE" bytes_per_connection)"; M_B="$(field "$MOSQ_LINE" bytes_per_connection)"
row "memory per connection (KiB)" "$(kib "$T_B")" "$(kib "$M_B")" "$(ratio "$T_B" "$M_B")"
row "pings answered / sent" "$(field "$TERN_LINE" pongs)/$(field "$TERN_LINE" pings)" \
  "$(field "$MOSQ_LINE" pongs)/$(field "$MOSQ_LINE" pings)" ""
[[ "$(field "$TERN_LINE" status)" == ok && "$(field "$MOSQ_LINE" status)" == ok ]] || exit 1
