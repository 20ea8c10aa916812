#!/usr/bin/env bash
# Storage benchmark, TSBS IoT shape: writes generated truck records through Tern's ingest
# pipeline into SQLite and into PostgreSQL, reports records/s per slice as the table grows, then
# query latency p50/p99 at the final size, next to the same questions as plain SQL on a
# PostgreSQL table with a (device, time) index loaded with COPY. See docs/benchmarks.md.
#
#   bench/storage/run.sh          (builds nothing: build the tern-bench-storage target first)
#
# Knobs (environment):
#   BENCH_RECORDS=10000000    records to write per backend (10,000 trucks x 1,000 readings)
#   BENCH_TRUCKS=10000        trucks (devices), one record each every 10 s of data time
#   BENCH_SLICE=1000000       report the write rate every this many records
#   BENCH_BACKENDS=sqlite,postgres   Tern's stores to run; plain SQL runs whenever postgres does
#   BENCH_REPS=50             repetitions of each query (after one untimed warm-up)
#   BENCH_FLEET_REPS=10       repetitions of the stationary query
#   BENCH_PG_OPTS=            extra `postgres` options, e.g. "-c shared_buffers=4GB"
#   BENCH_PG_PARTITION=1d     length of a messages partition in Tern's PostgreSQL store
#                             (storage.partition), e.g. 1h
#   BENCH_PLAIN=1             0: leave out the plain SQL table (saves its time and disk)
#   BENCH_ROLLUPS=1           0: query without running the rollup job first (saves its time and
#                             disk, about a quarter of the messages' size; window and hourly
#                             queries then read raw rows)
#   BENCH_LIVE_ROLLUPS=0      1: run the rollup job during the writes, once per new minute of
#                             data time, as `tern serve` does (the write rate then includes it)
#   BENCH_KEEP=0              1: keep the temp dir (databases) afterwards
#   BUILD_DIR=build           where tern-bench-storage is
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
RECORDS="${BENCH_RECORDS:-10000000}"
TRUCKS="${BENCH_TRUCKS:-10000}"
SLICE="${BENCH_SLICE:-1000000}"
BACKENDS="${BENCH_BACKENDS:-sqlite,postgres}"
REPS="${BENCH_REPS:-50}"
FLEET_REPS="${BENCH_FLEET_REPS:-10}"
PG_OPTS="${BENCH_PG_OPTS:-}"
PG_PARTITION="${BENCH_PG_PARTITION:-1d}"
PLAIN="${BENCH_PLAIN:-1}"
KEEP="${BENCH_KEEP:-0}"
ROLLUP_ARGS=()
[[ "${BENCH_ROLLUPS:-1}" == 0 ]] && ROLLUP_ARGS=(--no-rollups)
[[ "${BENCH_LIVE_ROLLUPS:-0}" == 1 ]] && ROLLUP_ARGS+=(--live-rollups)
BENCH="$BUILD_DIR/tern-bench-storage"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
has() { [[ ",$BACKENDS," == *",$1,"* ]]; }

[[ -x "$BENCH" ]] || die "no $BENCH (build it: cmake --build $BUILD_DIR --target tern-bench-storage)"
for b in ${BACKENDS//,/ }; do
  [[ "$b" == sqlite || "$b" == postgres ]] || die "BENCH_BACKENDS: unknown backend '$b'"
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-storage.XXXXXX")"
chmod 755 "$TMP"
PG_BIN=""
PG_DATA="$TMP/pg/data"
RUN_AS=()
cleanup() {
  if [[ -n "$PG_BIN" && -f "$PG_DATA/postmaster.pid" ]]; then
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [[ "$KEEP" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

OUT="$TMP/results.txt"
bench() { "$BENCH" --records "$RECORDS" --trucks "$TRUCKS" --slice "$SLICE" --reps "$REPS" \
            --fleet-reps "$FLEET_REPS" "${ROLLUP_ARGS[@]}" "$@" | tee -a "$OUT"; }

# --- machine --------------------------------------------------------------------------------
CPU_MODEL="$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null; then COMMIT="$COMMIT+dirty(src)"; fi
echo "== Tern storage benchmark (TSBS IoT shape) =="
echo "commit:    $COMMIT"
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:   $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(awk '{printf "%.1f GiB", $2/1048576}' <(grep MemTotal /proc/meminfo)), $(uname -sr), disk free $(df -h --output=avail "$TMP" | tail -1 | tr -d ' ')"
echo "data:      $RECORDS records, $TRUCKS trucks, one record per truck per 10 s (readings + diagnostics + tags as fields); backends: $BACKENDS"
echo "before:    uptime:$(uptime | sed 's/.*load average/ load average/')"
"$BENCH" --backend generate --records "$(( RECORDS < 1000000 ? RECORDS : 1000000 ))" --trucks "$TRUCKS"

# --- SQLite ---------------------------------------------------------------------------------
if has sqlite; then
  log "sqlite: writing $RECORDS records"
  mkdir -p "$TMP/sqlite"
  bench --backend sqlite --path "$TMP/sqlite/tern.db"
  rm -rf "$TMP/sqlite"  # free the disk before PostgreSQL
  echo "after sqlite: uptime:$(uptime | sed 's/.*load average/ load average/')"
fi

# --- PostgreSQL -----------------------------------------------------------------------------
if has postgres; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -x "$PG_BIN/initdb" ]] || die "no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)"
  mkdir -p "$TMP/pg/sock"
  if [[ "$(id -u)" == 0 ]]; then  # postgres refuses to run as root
    RUN_AS=(runuser -u postgres --)
    chown -R postgres "$TMP/pg"
  fi
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U tern -E UTF8 --locale=C >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
  # Server defaults apart from where it listens: fsync=on, synchronous_commit=on,
  # full_page_writes=on, shared_buffers=128MB, max_wal_size=1GB.
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$TMP/pg/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP/pg/sock $PG_OPTS" start >/dev/null \
    || { cat "$TMP/pg/server.log" >&2; die "postgres did not start"; }
  URL="host=127.0.0.1 port=$PORT user=tern connect_timeout=5"
  PSQL=("$PG_BIN/psql" -X -q -A -t)
  echo "postgres:  $("${PSQL[@]}" "$URL dbname=postgres" -c 'SHOW server_version') at 127.0.0.1:$PORT; $("${PSQL[@]}" "$URL dbname=postgres" -F ' ' -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers','max_wal_size','wal_level','work_mem')")${PG_OPTS:+ (BENCH_PG_OPTS: $PG_OPTS)}"
  "${PSQL[@]}" "$URL dbname=postgres" -c 'CREATE DATABASE tern' -c 'CREATE DATABASE plain'

  log "postgres (Tern's store): writing $RECORDS records"
  bench --backend postgres --url "$URL dbname=tern" --partition "$PG_PARTITION"
  "${PSQL[@]}" "$URL dbname=postgres" -c 'DROP DATABASE tern'  # free the disk
  echo "after postgres: uptime:$(uptime | sed 's/.*load average/ load average/')"

  if [[ "$PLAIN" != 0 ]]; then
    log "plain PostgreSQL table: COPY $RECORDS rows"
    bench --backend plain --url "$URL dbname=plain"
    echo "after plain: uptime:$(uptime | sed 's/.*load average/ load average/')"
  fi
fi

# --- summary --------------------------------------------------------------------------------
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
line() { grep "^$1 backend=$2 ${3:-}" "$OUT" | head -1 || true; }
echo
echo "== Write rate per slice (records/s; slice k = records (k-1)*$SLICE+1 .. k*$SLICE) =="
cols=()
for b in sqlite postgres plain; do grep -q "^SLICE backend=$b " "$OUT" && cols+=("$b"); done
printf "%-12s" "stored up to"; for b in "${cols[@]}"; do printf " %14s" "$b"; done; echo
for upto in $(grep '^SLICE ' "$OUT" | sed 's/.* upto=\([0-9]*\).*/\1/' | sort -n | uniq); do
  printf "%-12s" "$upto"
  for b in "${cols[@]}"; do
    l="$(grep "^SLICE backend=$b .* upto=$upto " "$OUT" | head -1 || true)"
    printf " %14s" "$(field "$l" rate)"
  done
  echo
done
printf "%-12s" "whole run"
for b in "${cols[@]}"; do printf " %14s" "$(field "$(line WRITE "$b")" rate)"; done; echo
echo
echo "== Checks and sizes =="
grep -E '^(CHECK|SIZE|WRITE) ' "$OUT" || true
echo
echo "== Query latency at $RECORDS records (ms, p50 / p99; rows = total over the repetitions) =="
printf "%-18s %24s %24s %24s %12s %12s\n" query sqlite postgres plain-sql sqlite/plain postgres/plain
for q in raw_day hourly_avg_30d last_location low_fuel stationary_10min; do
  row=()
  for b in sqlite postgres plain; do
    l="$(line QUERY "$b" "query=$q ")"
    if [[ -n "$l" ]]; then row+=("$(field "$l" p50_ms) / $(field "$l" p99_ms) ($(field "$l" rows_total))"); else row+=("-"); fi
  done
  ratio() {  # backend: p50 ratio to plain
    local a b; a="$(field "$(line QUERY "$1" "query=$q ")" p50_ms)"; b="$(field "$(line QUERY plain "query=$q ")" p50_ms)"
    awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.1fx", a / b; else printf "-" }'
  }
  printf "%-18s %24s %24s %24s %12s %12s\n" "$q" "${row[0]}" "${row[1]}" "${row[2]}" "$(ratio sqlite)" "$(ratio postgres)"
done
echo "(ratios are p50 over plain SQL's p50; equal row counts mean the same answers)"
echo "after:     uptime:$(uptime | sed 's/.*load average/ load average/')"
