#!/usr/bin/env bash
# Tracker benchmark: simulated GT06 and Teltonika devices against one `tern serve`, each device
# sending its next position as soon as the previous one is acknowledged (and Tern acknowledges
# only after the commit). Reports positions stored per second and each simulator's ACK latency.
#
#   bench/trackers/run.sh          (builds nothing: run `make build` first)
#
# Knobs (environment):
#   BENCH_SECONDS=20        how long the simulators send
#   BENCH_GT06=2000         simulated GT06 devices (one process)
#   BENCH_TELTONIKA=2000    simulated Teltonika devices (another process, at the same time)
#   BENCH_RATE=0            seconds between one device's positions; 0 = as fast as acknowledged
#   BENCH_SIM_THREADS=1     event loops per simulator process
#   BENCH_HEARTBEAT_EVERY=0 a heartbeat after every N positions (0 = none, so records = positions)
#   BENCH_KEEP=0            1: keep the temp dir (logs, tern.db) afterwards
#   BUILD_DIR=build         where tern is
#   BENCH_COMMIT=           commit to print instead of asking git (for exported trees)
#   TERN_*                  passed through to `tern serve`, e.g. TERN_STORAGE_SYNC=full
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
SECS="${BENCH_SECONDS:-20}"
N_GT06="${BENCH_GT06:-2000}"
N_TELTONIKA="${BENCH_TELTONIKA:-2000}"
RATE="${BENCH_RATE:-0}"
SIM_THREADS="${BENCH_SIM_THREADS:-1}"
HEARTBEAT_EVERY="${BENCH_HEARTBEAT_EVERY:-0}"
KEEP="${BENCH_KEEP:-0}"
TERN="$BUILD_DIR/tern"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

[[ -x "$TERN" ]] || die "no $TERN (build first: make build, or set BUILD_DIR)"
"$TERN" sim tracker --help >/dev/null 2>&1 || die "$TERN has no 'sim tracker'; rebuild it"
command -v python3 >/dev/null || die "python3 not found (used to pick free ports)"
command -v sqlite3 >/dev/null || die "sqlite3 not found (used to count stored positions)"

# 4,000 devices need 4,000 descriptors on each side; the soft limit is often 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-trackers.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, picked by the kernel (closed again at once; a race is unlikely and shows
# as a failed start below).
read -r P_MQTT P_HTTP P_GT06 P_TELTONIKA < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()')

wait_port() {  # port seconds pid
  local i
  for i in $(seq $(( $2 * 10 ))); do
    kill -0 "$3" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

DATA="$TMP/data"
stored() { sqlite3 "$DATA/tern.db" 'PRAGMA busy_timeout=5000; SELECT count(*) FROM messages' 2>/dev/null | tail -1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

# --- machine --------------------------------------------------------------------------------
CPU_MODEL="$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
if [[ -n "${BENCH_COMMIT:-}" ]]; then
  COMMIT="$BENCH_COMMIT"
else
  COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if ! git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null; then COMMIT="$COMMIT+dirty(src)"; fi
fi
echo "== Tern tracker benchmark =="
echo "commit:    $COMMIT"
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:   $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(awk '{printf "%.1f GiB", $2/1048576}' <(grep MemTotal /proc/meminfo)), $(uname -sr)"
echo "load:      $N_GT06 gt06 + $N_TELTONIKA teltonika devices, rate=$RATE (0 = next position on ACK), ${SECS}s, heartbeat every $HEARTBEAT_EVERY, sim threads=$SIM_THREADS per process"
echo "server:    tern serve, sqlite, storage.sync=${TERN_STORAGE_SYNC:-normal}, ACK after commit"
echo "before:    uptime:$(uptime | sed 's/.*load average/ load average/')"

# --- server ---------------------------------------------------------------------------------
mkdir -p "$DATA"
TERN_TRACKERS_ENABLED=gt06,teltonika TERN_TRACKERS_HOST=127.0.0.1 \
  TERN_TRACKERS_GT06_PORT="$P_GT06" TERN_TRACKERS_TELTONIKA_PORT="$P_TELTONIKA" \
  "$TERN" serve --data-dir "$DATA" --mqtt-listen "127.0.0.1:$P_MQTT" \
  --http-listen "127.0.0.1:$P_HTTP" --log-level warn >"$TMP/tern.log" 2>&1 &
TERN_PID=$!
PIDS+=("$TERN_PID")
wait_port "$P_GT06" 15 "$TERN_PID" || { cat "$TMP/tern.log" >&2; die "tern did not start"; }
wait_port "$P_TELTONIKA" 5 "$TERN_PID" || { cat "$TMP/tern.log" >&2; die "tern did not start"; }

# --- run ------------------------------------------------------------------------------------
BEFORE="$(stored)"
CPU_BEFORE="$(cpu_ticks "$TERN_PID")"
START="$(date +%s.%N)"
sim() {  # protocol devices port imei-base (exec: $! is the simulator itself)
  exec "$TERN" sim tracker --protocol "$1" --devices "$2" --server "127.0.0.1:$3" --rate "$RATE" \
    --duration "$SECS" --threads "$SIM_THREADS" --imei-base "$4" \
    --heartbeat-every "$HEARTBEAT_EVERY" >"$TMP/sim-$1.out" 2>"$TMP/sim-$1.log"
}
sim gt06 "$N_GT06" "$P_GT06" 860000000000000 &
SIM_GT06=$!
sim teltonika "$N_TELTONIKA" "$P_TELTONIKA" 350000000000000 &
SIM_TELTONIKA=$!
PIDS+=("$SIM_GT06" "$SIM_TELTONIKA")
# Steady state: the count 5 s in and 5 s before the end (after connecting, before draining).
WINDOW=$(( SECS > 12 ? SECS - 10 : 0 ))
if (( WINDOW > 0 )); then
  sleep 5; MID_A="$(stored)"; T_A="$(date +%s.%N)"
  CPU_A="$(cpu_ticks "$TERN_PID") $(cpu_ticks "$SIM_GT06") $(cpu_ticks "$SIM_TELTONIKA") $(awk '{print $2 + $3 + $4 + $7 + $8}' /proc/stat | head -1)"
  sleep "$WINDOW"; MID_B="$(stored)"; T_B="$(date +%s.%N)"
  CPU_B="$(cpu_ticks "$TERN_PID") $(cpu_ticks "$SIM_GT06") $(cpu_ticks "$SIM_TELTONIKA") $(awk '{print $2 + $3 + $4 + $7 + $8}' /proc/stat | head -1)"
fi
RC_GT06=0; wait "$SIM_GT06" || RC_GT06=$?
RC_TELTONIKA=0; wait "$SIM_TELTONIKA" || RC_TELTONIKA=$?
END="$(date +%s.%N)"
AFTER="$(stored)"
CPU_AFTER="$(cpu_ticks "$TERN_PID")"

# --- report ---------------------------------------------------------------------------------
ELAPSED="$(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.2f", b - a}')"
echo "after:     uptime:$(uptime | sed 's/.*load average/ load average/')"
echo "gt06:      exit $RC_GT06: $(tail -1 "$TMP/sim-gt06.out" 2>/dev/null || echo '?')"
echo "teltonika: exit $RC_TELTONIKA: $(tail -1 "$TMP/sim-teltonika.out" 2>/dev/null || echo '?')"
echo "stored:    $((AFTER - BEFORE)) records in ${ELAPSED}s (simulators' whole run incl. connect and drain): $(awk -v n=$((AFTER - BEFORE)) -v t="$ELAPSED" 'BEGIN {printf "%.0f", n / t}')/s"
if (( WINDOW > 0 )); then
  echo "steady:    $(awk -v a="$MID_A" -v b="$MID_B" -v ta="$T_A" -v tb="$T_B" 'BEGIN {printf "%.0f positions stored/s (%d in %.1fs, from 5 s in to 5 s before the end)", (b - a) / (tb - ta), b - a, tb - ta}')"
fi
if (( WINDOW > 0 )); then
  # Who used the two cores in the steady window; "other" is everything else on the machine.
  echo "cpu:       $(awk -v a="$CPU_A" -v b="$CPU_B" -v h="$CLK_TCK" -v ta="$T_A" -v tb="$T_B" -v n="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = tb - ta
    tern = (y[1] - x[1]) / h / t; g = (y[2] - x[2]) / h / t; te = (y[3] - x[3]) / h / t
    all = (y[4] - x[4]) / h / t
    printf "steady window, in cores of %d: tern %.2f, sim gt06 %.2f, sim teltonika %.2f, other %.2f (machine busy %.0f%%)", n, tern, g, te, all - tern - g - te, 100 * all / n }')"
fi
echo "tern cpu:  $(awk -v t=$((CPU_AFTER - CPU_BEFORE)) -v h="$CLK_TCK" -v e="$ELAPSED" 'BEGIN {printf "%.1f s CPU in %.1f s (%.0f%% of one core)", t / h, e, 100 * t / h / e}')"
if [[ -s "$TMP/tern.log" ]]; then
  log "tern log (last lines):"; tail -5 "$TMP/tern.log" >&2
fi
for p in gt06 teltonika; do
  if grep -q warn "$TMP/sim-$p.log" 2>/dev/null; then
    log "sim $p warnings (first lines):"; grep warn "$TMP/sim-$p.log" | head -5 >&2
  fi
done
