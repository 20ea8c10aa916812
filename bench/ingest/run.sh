#!/usr/bin/env bash
# Ingest benchmark: Tern (durable: every QoS 1 message committed to SQLite before its PUBACK)
# against Debian's Mosquitto (in memory, persistence off), same load client, same run, loopback.
#
#   bench/ingest/run.sh            (or `make bench`, which builds first)
#
# Knobs (environment):
#   BENCH_SECONDS=20        measured seconds of the throughput phase
#   BENCH_CONNECTIONS=100   QoS 1 publishing connections (throughput)
#   BENCH_WINDOW=20         unacknowledged publishes per connection (throughput)
#   BENCH_RATE=20000        total QoS 0 msg/s in the latency phase
#   BENCH_LAT_SECONDS=10    measured seconds of the latency phase
#   BENCH_PUBLISHERS=10     publishing connections in the latency phase
#   BENCH_THREADS=1         load client threads
#   BENCH_ROUNDS=1          repeat both phases this many times (brokers alternate within a round)
#   BENCH_PERF=0            1: also `perf record` Tern during one extra throughput run
#   BENCH_KEEP=0            1: keep the temp dir (logs, tern.db) afterwards
#   BENCH_WAIT_QUIET=0      wait up to this many seconds for the machine to be idle (<20% busy)
#   BUILD_DIR=build         where tern and tern-bench-mqtt are
#   BENCH_COMMIT=           commit to print instead of asking git (for exported trees)
#   BENCH_NICE=             e.g. -10: run brokers and client at this nice level (root only), so
#                           that unrelated work on a shared machine disturbs the numbers less
#   MOSQUITTO=/usr/sbin/mosquitto
#   TERN_*                  passed through to `tern serve`, e.g. TERN_STORAGE_SYNC=full (fsync
#                           per commit) or TERN_INGEST_BATCH_MS=5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
SECONDS_TP="${BENCH_SECONDS:-20}"
CONNECTIONS="${BENCH_CONNECTIONS:-100}"
WINDOW="${BENCH_WINDOW:-20}"
RATE="${BENCH_RATE:-20000}"
SECONDS_LAT="${BENCH_LAT_SECONDS:-10}"
PUBLISHERS="${BENCH_PUBLISHERS:-10}"
THREADS="${BENCH_THREADS:-1}"
ROUNDS="${BENCH_ROUNDS:-1}"
PERF="${BENCH_PERF:-0}"
KEEP="${BENCH_KEEP:-0}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"
NICE=()
[[ -n "${BENCH_NICE:-}" ]] && NICE=(nice -n "$BENCH_NICE")
TERN="$BUILD_DIR/tern"
BENCH="$BUILD_DIR/tern-bench-mqtt"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# --- build if needed -----------------------------------------------------------------------
if [[ ! -x "$TERN" || ! -x "$BENCH" ]]; then
  log "building ($TERN or $BENCH missing)"
  make -C "$ROOT" build BUILD_DIR="$BUILD_DIR" >&2
fi
[[ -x "$TERN" ]] || die "no $TERN after building"
[[ -x "$BENCH" ]] || die "no $BENCH after building"
[[ -x "$MOSQUITTO" ]] || die "$MOSQUITTO not found (apt-get install mosquitto)"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found (used to pick free ports)"

# --- temp dir, cleanup -------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # Bounded wait: SIGKILL whatever has not exited after 5 s.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, picked by the kernel (closed again at once; a race is unlikely and
# shows as a failed start below).
read -r P_TERN_MQTT P_TERN_HTTP P_MOSQ < <(python3 -c '
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# "tid:ticks ..." for every thread of a process
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    echo -n "${t##*/}:$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0) "
  done
}
# thread_cpu BEFORE AFTER → "tid:seconds,..." for threads that used any CPU, busiest first
thread_cpu() {
  awk -v a="$1" -v b="$2" -v h="$CLK_TCK" 'BEGIN {
    n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, ":"); before[kv[1]] = kv[2] }
    n = split(b, y, " "); out = ""
    for (i = 1; i <= n; i++) { split(y[i], kv, ":"); d = kv[2] - before[kv[1]]
      if (d > 0) out = out sprintf("%s%s:%.2f", out == "" ? "" : ",", kv[1], d / h) }
    print out == "" ? "-" : out }' | tr ',' '\n' | sort -t: -k2 -nr | paste -sd, -
}
CLK_TCK="$(getconf CLK_TCK)"

# Machine-wide busy percentage over one second: anything else running skews the numbers.
machine_busy() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local ta=0 tb=0 i
  for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=$((tb - ta))
  (( total > 0 )) || { echo 0; return; }
  echo $(( 100 * (total - idle) / total ))
}

# --- machine --------------------------------------------------------------------------------
CPU_MODEL="$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
if [[ -n "${BENCH_COMMIT:-}" ]]; then
  COMMIT="$BENCH_COMMIT"  # e.g. when benchmarking a `git archive` export, which has no .git
else
  COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if ! git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null; then COMMIT="$COMMIT+dirty(src)"; fi
fi
MOSQ_VERSION="$({ "$MOSQUITTO" -h 2>/dev/null || true; } | awk '/version/{print $3; exit}')"
TERN_VERSION="$({ "$TERN" --version 2>/dev/null || true; } | awk '{print $2; exit}')"
echo "== Tern ingest benchmark =="
echo "commit:    $COMMIT"
echo "machine:   $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(awk '{printf "%.1f GiB", $2/1048576}' <(grep MemTotal /proc/meminfo)), $(uname -sr)"
echo "brokers:   tern ${TERN_VERSION:-?} (sqlite, storage.sync=${TERN_STORAGE_SYNC:-normal}, PUBACK after commit) vs mosquitto ${MOSQ_VERSION:-?} (persistence false)"
echo "load:      throughput: $CONNECTIONS conns x $WINDOW in flight, QoS 1, 100 B JSON, ${SECONDS_TP}s; latency: $PUBLISHERS publishers QoS 0 at $RATE msg/s, ${SECONDS_LAT}s, 1 subscriber; client threads=$THREADS; rounds=$ROUNDS"
BUSY="$(machine_busy)"
WAIT_QUIET="${BENCH_WAIT_QUIET:-0}"
QUIET_DEADLINE=$(( $(date +%s) + WAIT_QUIET ))
while (( BUSY >= 20 && $(date +%s) < QUIET_DEADLINE )); do
  log "machine ${BUSY}% busy; waiting for it to go quiet (BENCH_WAIT_QUIET=$WAIT_QUIET)"
  sleep 4
  BUSY="$(machine_busy)"
done
echo "date:      $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "busy:      ${BUSY}% of all CPUs busy before start (should be ~0)"
(( BUSY < 20 )) || echo "WARNING:   the machine is busy with other work; numbers will be lower and noisier"
[[ -n "${BENCH_NICE:-}" ]] && echo "priority:  brokers and client run at nice ${BENCH_NICE}"

# --- start the brokers ------------------------------------------------------------------------
DATA="$TMP/tern-data"
"${NICE[@]}" "$TERN" serve --data-dir "$DATA" --mqtt-listen "127.0.0.1:$P_TERN_MQTT" \
  --http-listen "127.0.0.1:$P_TERN_HTTP" --log-level warn >"$TMP/tern.log" 2>&1 &
TERN_PID=$!
PIDS+=("$TERN_PID")

cat >"$TMP/mosquitto.conf" <<EOF
listener $P_MOSQ 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence false
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
EOF
"${NICE[@]}" "$MOSQUITTO" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
MOSQ_PID=$!
PIDS+=("$MOSQ_PID")

wait_port 127.0.0.1 "$P_TERN_MQTT" 15 "$TERN_PID" || { cat "$TMP/tern.log" >&2; die "tern did not start"; }
wait_port 127.0.0.1 "$P_TERN_HTTP" 15 "$TERN_PID" || { cat "$TMP/tern.log" >&2; die "tern http did not start"; }
wait_port 127.0.0.1 "$P_MOSQ" 15 "$MOSQ_PID" || { cat "$TMP/mosquitto.log" >&2; die "mosquitto did not start"; }

health() { curl -s --max-time 5 "http://127.0.0.1:$P_TERN_HTTP/api/v1/health" || echo '{}'; }
stored() {  # messages in Tern's database, or "?" if it cannot be read
  if command -v sqlite3 >/dev/null && [[ -f "$DATA/tern.db" ]]; then
    sqlite3 "$DATA/tern.db" 'PRAGMA busy_timeout=5000; SELECT count(*) FROM messages' 2>/dev/null | tail -1 || echo "?"
  else
    echo "?"
  fi
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }  # field LINE KEY
jnum() { python3 -c 'import json,sys
d=json.loads(sys.argv[1] or "{}")
for k in sys.argv[2].split("."): d=d.get(k,{}) if isinstance(d,dict) else {}
print(d if d!={} else "?")' "$1" "$2"; }

# run_one NAME PID PORT ARGS... → prints the RESULT line with broker_cpu_s appended
run_one() {
  local name=$1 pid=$2 port=$3; shift 3
  local before after line tbefore tafter
  kill -0 "$pid" 2>/dev/null || { echo "RESULT broker=$name status=failed error=\"broker process is gone\""; return; }
  before="$(cpu_ticks "$pid")"
  tbefore="$(thread_ticks "$pid")"
  line="$("${NICE[@]}" "$BENCH" "$@" --broker "127.0.0.1:$port" --label "$name" --threads "$THREADS" 2>>"$TMP/bench.log" \
          | grep '^RESULT' || true)"
  after="$(cpu_ticks "$pid")"
  tafter="$(thread_ticks "$pid")"
  [[ -n "$line" ]] || line="RESULT broker=$name status=failed error=\"no RESULT line (see bench.log)\""
  echo "$line broker_cpu_s=$(awk -v t=$((after - before)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}') broker_threads_cpu_s=$(thread_cpu "$tbefore" "$tafter")"
}

declare -A TP LAT
TP_ARGS=(throughput --connections "$CONNECTIONS" --window "$WINDOW" --seconds "$SECONDS_TP")
LAT_ARGS=(latency --publishers "$PUBLISHERS" --rate "$RATE" --seconds "$SECONDS_LAT")

STORED_AFTER_TP="?"; ACKED_TERN_TOTAL=0
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS: throughput"
  TP[tern,$round]="$(run_one tern "$TERN_PID" "$P_TERN_MQTT" "${TP_ARGS[@]}")"
  echo "${TP[tern,$round]}"
  ACKED_TERN_TOTAL=$(( ACKED_TERN_TOTAL + $(field "${TP[tern,$round]}" acked_total | sed 's/^$/0/') ))
  STORED_AFTER_TP="$(stored)"
  HEALTH_TP="$(health)"
  TP[mosquitto,$round]="$(run_one mosquitto "$MOSQ_PID" "$P_MOSQ" "${TP_ARGS[@]}")"
  echo "${TP[mosquitto,$round]}"
done
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS: latency"
  LAT[tern,$round]="$(run_one tern "$TERN_PID" "$P_TERN_MQTT" "${LAT_ARGS[@]}")"
  echo "${LAT[tern,$round]}"
  LAT[mosquitto,$round]="$(run_one mosquitto "$MOSQ_PID" "$P_MOSQ" "${LAT_ARGS[@]}")"
  echo "${LAT[mosquitto,$round]}"
done
STORED_END="$(stored)"
HEALTH_END="$(health)"

if [[ "$PERF" == 1 ]] && command -v perf >/dev/null; then
  log "perf: recording Tern during one more throughput run"
  perf record -F 999 -g -o "$TMP/perf.data" -p "$TERN_PID" -- sleep "$((SECONDS_TP + 3))" \
    >/dev/null 2>"$TMP/perf.log" &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
  PERF_LINE="$(run_one tern "$TERN_PID" "$P_TERN_MQTT" "${TP_ARGS[@]}")"
  wait "$PERF_PID" 2>/dev/null || true
  echo "$PERF_LINE (under perf)"
  echo "--- perf: Tern, self time by symbol (top 25) ---"
  perf report -i "$TMP/perf.data" --no-children --sort comm,dso,symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -25 || true
  echo "--- perf: Tern, samples by thread and library (the ingest writer is the lowest tid after the main thread) ---"
  perf script -i "$TMP/perf.data" -F tid,ip,dso 2>/dev/null | awk '
    /^ *[0-9]+ *$/ { tid = $1; if ((getline) > 0) { n[tid]++; d[tid " " $NF]++; total++ } }
    END { for (k in d) { split(k, a, " "); printf "%7.1f%% of all  %5.1f%% of thread  tid %s  %s\n",
                                100 * d[k] / total, 100 * d[k] / n[a[1]], a[1], a[2] } }' \
    | sort -k5,5n -k1,1nr | awk '$1 + 0 >= 0.5' || true
fi

# --- summary --------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && a != "" && a != "?") printf "%.2f", a/b; else printf "-" }'; }
per100k() {  # cpu seconds per 100k messages
  awk -v c="$1" -v n="$2" 'BEGIN{ if (n+0 > 0) printf "%.2f", c*100000/n; else printf "-" }'; }
row() { printf "%-34s %14s %14s %14s\n" "$@"; }

echo
echo "== Summary =="
row "" "Tern" "Mosquitto" "Tern/Mosquitto"
for round in $(seq "$ROUNDS"); do
  t="${TP[tern,$round]}"; m="${TP[mosquitto,$round]}"
  sfx=""; (( ROUNDS > 1 )) && sfx=" (round $round)"
  row "QoS 1 acked msg/s$sfx" "$(field "$t" rate)" "$(field "$m" rate)" "$(ratio "$(field "$t" rate)" "$(field "$m" rate)")"
  row "  PUBACK latency p50 / p99 ms" "$(field "$t" ack_p50_ms) / $(field "$t" ack_p99_ms)" \
      "$(field "$m" ack_p50_ms) / $(field "$m" ack_p99_ms)" ""
  row "  broker CPU s per 100k msgs" "$(per100k "$(field "$t" broker_cpu_s)" "$(field "$t" acked_total)")" \
      "$(per100k "$(field "$m" broker_cpu_s)" "$(field "$m" acked_total)")" ""
  row "  client CPU s per 100k msgs" "$(per100k "$(field "$t" client_cpu_s)" "$(field "$t" acked_total)")" \
      "$(per100k "$(field "$m" client_cpu_s)" "$(field "$m" acked_total)")" ""
  row "  status / errors" "$(field "$t" status)/$(field "$t" errors)" "$(field "$m" status)/$(field "$m" errors)" ""
  echo "  broker CPU s by thread (tid:s):  tern $(field "$t" broker_threads_cpu_s | cut -d, -f1-4)  mosquitto $(field "$m" broker_threads_cpu_s | cut -d, -f1-2)"
done
for round in $(seq "$ROUNDS"); do
  t="${LAT[tern,$round]}"; m="${LAT[mosquitto,$round]}"
  sfx=""; (( ROUNDS > 1 )) && sfx=" (round $round)"
  row "QoS 0 @ $RATE/s latency p50 ms$sfx" "$(field "$t" p50_ms)" "$(field "$m" p50_ms)" "$(ratio "$(field "$t" p50_ms)" "$(field "$m" p50_ms)")"
  row "  latency p99 ms" "$(field "$t" p99_ms)" "$(field "$m" p99_ms)" "$(ratio "$(field "$t" p99_ms)" "$(field "$m" p99_ms)")"
  row "  latency max ms" "$(field "$t" max_ms)" "$(field "$m" max_ms)" ""
  row "  received / sent" "$(field "$t" received)/$(field "$t" sent)" "$(field "$m" received)/$(field "$m" sent)" ""
  row "  broker CPU s" "$(field "$t" broker_cpu_s)" "$(field "$m" broker_cpu_s)" ""
done
echo
echo "Tern persisted: $STORED_AFTER_TP rows in messages after the throughput phase (QoS 1 acked there: $ACKED_TERN_TOTAL);"
echo "                $STORED_END rows at the end (latency-phase QoS 0 messages are stored too)."
echo "Tern ingest:    committed=$(jnum "$HEALTH_END" ingest.committed) batches=$(jnum "$HEALTH_END" ingest.batches) commit_failures=$(jnum "$HEALTH_END" ingest.commit_failures) read_pauses=$(jnum "$HEALTH_END" ingest.read_pauses)"
if [[ "$STORED_AFTER_TP" =~ ^[0-9]+$ ]] && (( STORED_AFTER_TP < ACKED_TERN_TOTAL )); then
  echo "WARNING: Tern acknowledged more QoS 1 messages than it has stored"
fi
BUSY_END="$(machine_busy)"
echo "busy:      ${BUSY_END}% of all CPUs busy after the run (brokers idle; should be ~0)"
if grep -qiE 'error|warn' "$TMP/tern.log" 2>/dev/null; then
  echo "--- tern.log (warnings/errors, first 10) ---"; grep -iE 'error|warn' "$TMP/tern.log" | head -10
fi
