// The PostgreSQL backend (libpq). One writer connection, used only by the writer thread, that
// sends each batch as binary COPY in one transaction; a small pool of read connections for
// everything else. Messages are range-partitioned by server time (or a TimescaleDB hypertable
// when the extension is available). A lost connection is re-established with backoff; while
// the database is down every call returns an error.
#include "storage/postgres/postgres_store.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <mutex>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "storage/postgres/flat_json.h"
#include "storage/rollup.h"

namespace tern::storage::postgres {
namespace {

constexpr int kSchemaVersion = 7;
constexpr std::int64_t kFlagPayloadJson = 1;  // messages.flags bit 0, as in the SQLite backend
constexpr std::size_t kMaxIdleReaders = 8;
constexpr std::int64_t kUsPerDay = 86'400'000'000;
// Serialises migrations when several nodes start against one database at once.
constexpr const char* kMigrationLockKey = "7384612093";

using Clock = std::chrono::steady_clock;

// --- migrations --------------------------------------------------------------------------------
// Applied in order at start, each in its own transaction together with its row in
// tern_schema_version. Never edit a released entry: append a new one and bump kSchemaVersion.
// Migration 1 differs only in how messages is partitioned, decided once when it runs.

constexpr const char* kSqlSchemaTable =
    "CREATE TABLE IF NOT EXISTS tern_schema_version("
    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";

constexpr const char* kMigration1Devices = R"sql(
CREATE TABLE devices(
  device_id text PRIMARY KEY,
  first_seen bigint NOT NULL,
  last_seen bigint NOT NULL,
  message_count bigint NOT NULL DEFAULT 0,
  -- json, not jsonb: it keeps number tokens verbatim, so int/double types survive.
  latest json NOT NULL DEFAULT '{}'
);
-- Newer keys win; json_each/json_object_agg keep the value tokens verbatim.
CREATE FUNCTION tern_merge_latest(old json, new json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(json_object_agg(m.key, m.value), '{}'::json) FROM (
    SELECT key, value FROM json_each(old) WHERE key NOT IN (SELECT key FROM json_each(new))
    UNION ALL
    SELECT key, value FROM json_each(new)) AS m
$$;
CREATE SEQUENCE messages_id_seq AS bigint;
CREATE TABLE messages(
  id bigint NOT NULL DEFAULT nextval('messages_id_seq'),
  device_id text NOT NULL,
  ts bigint NOT NULL,  -- server receive time, UTC µs: the partition key
  device_ts bigint,
  node text NOT NULL,
  topic text NOT NULL,
  payload bytea NOT NULL,
  flags smallint NOT NULL,
  fields json
))sql";

constexpr const char* kMigration1Index =
    "CREATE INDEX messages_device_ts ON messages(device_id, ts, id)";

// Per-key retention remembers how far it got (messages before done_before are done), so each
// run reads only rows it has not seen.
constexpr const char* kMigration2 =
    "CREATE TABLE tern_retention_progress(key text PRIMARY KEY, done_before bigint NOT NULL)";

// Device tags (for fleet queries over a group) and attributes, set through the API.
constexpr const char* kMigration3 = R"sql(
ALTER TABLE devices ADD COLUMN attributes json NOT NULL DEFAULT '{}';
CREATE TABLE device_tags(
  device_id text NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (device_id, key)
);
-- A group (key = value) is one range of this index.
CREATE INDEX device_tags_key_value ON device_tags(key, value, device_id))sql";

// Rollups (storage/rollup.h): per device, minute (hour) and key. tern_rollup_state holds the
// watermark (whole minutes before it are rolled up), pending (the writer marks records before it
// dirty) and the retention floor; tern_rollup_key_floor the per-key retention floors. The BRIN
// index lets a rollup run read one minute range of every device without a scan.
constexpr const char* kMigration4 = R"sql(
CREATE TABLE tern_rollup_1m(
  device_id text NOT NULL, bucket bigint NOT NULL, key text NOT NULL,
  n bigint NOT NULL, sum float8 NOT NULL, min float8 NOT NULL, max float8 NOT NULL,
  first_ts bigint NOT NULL, first float8 NOT NULL, last_ts bigint NOT NULL, last float8 NOT NULL,
  PRIMARY KEY (device_id, bucket, key));
CREATE TABLE tern_rollup_1h (LIKE tern_rollup_1m INCLUDING ALL);
CREATE TABLE tern_rollup_dirty(id bigserial PRIMARY KEY, device_id text NOT NULL,
  bucket bigint NOT NULL);
CREATE TABLE tern_rollup_state(id int PRIMARY KEY CHECK (id = 1), watermark bigint NOT NULL,
  pending bigint NOT NULL, floor bigint NOT NULL);
CREATE TABLE tern_rollup_key_floor(key text PRIMARY KEY, floor bigint NOT NULL);
CREATE INDEX messages_ts_brin ON messages USING brin(ts))sql";

// A device's display name and type, set through the API.
constexpr const char* kMigration5 =
    "ALTER TABLE devices ADD COLUMN name text NOT NULL DEFAULT '', "
    "ADD COLUMN type text NOT NULL DEFAULT ''";

// The keys of `latest` when the writer knows them (NULL: not known yet). A batch whose new latest
// values name every key the device has replaces them without the JSON merge, which cost most of
// a batch's time when every record names the same keys.
// Every batch updates the row of each device in it: with room left in each page, the new row
// version goes into the same page (a HOT update) and the dead ones are pruned there, so the table
// does not grow between autovacuum runs (without it, 3M records left 2M dead row versions, 1.3 GB
// for 10,000 devices, and device lists took 0.6 s).
constexpr const char* kMigration6 =
    "ALTER TABLE devices ADD COLUMN latest_keys text[];\n"
    "ALTER TABLE devices SET (fillfactor = 50)";
// Settings that fix the database's layout, decided when it is created. partition_us: the
// length of a messages partition (or TimescaleDB chunk). A database made before this migration
// was partitioned by day, the only length earlier builds knew; the value is set when it runs.
constexpr const char* kMigration7 =
    "CREATE TABLE tern_settings (key text PRIMARY KEY, value text NOT NULL);\n"
    "INSERT INTO tern_settings VALUES ('partition_us', ";

// --- SQL ---------------------------------------------------------------------------------------

constexpr const char* kSqlBatchTable =
    "CREATE TEMP TABLE IF NOT EXISTS tern_batch_devices(device_id text, first_seen bigint, "
    "last_seen bigint, message_count bigint, latest json, latest_keys text[]) "
    "ON COMMIT DELETE ROWS";
constexpr const char* kSqlCopyDevices =
    "COPY tern_batch_devices(device_id, first_seen, last_seen, message_count, latest, "
    "latest_keys) FROM STDIN (FORMAT binary)";
// When the batch's latest values name every key the device has (its known keys are a subset of
// the batch's), the merge would give the batch's values: take them as they are. Otherwise merge,
// and the keys are the old ones and the new ones.
constexpr const char* kSqlUpsertDevices =
    "INSERT INTO devices AS d(device_id, first_seen, last_seen, message_count, latest, "
    "latest_keys) "
    "SELECT device_id, first_seen, last_seen, message_count, latest, latest_keys "
    "FROM tern_batch_devices "
    "ON CONFLICT(device_id) DO UPDATE SET "
    "first_seen = CASE WHEN d.message_count = 0 THEN excluded.first_seen "
    "ELSE least(d.first_seen, excluded.first_seen) END, "
    "last_seen = greatest(d.last_seen, excluded.last_seen), "
    "message_count = d.message_count + excluded.message_count, "
    "latest = CASE WHEN d.latest_keys <@ excluded.latest_keys THEN excluded.latest "
    "ELSE tern_merge_latest(d.latest, excluded.latest) END, "
    "latest_keys = CASE WHEN d.latest_keys <@ excluded.latest_keys THEN excluded.latest_keys "
    "ELSE ARRAY(SELECT json_object_keys(d.latest) UNION SELECT unnest(excluded.latest_keys)) END";
constexpr const char* kSqlCopyMessages =
    "COPY messages(device_id, ts, device_ts, node, topic, payload, flags, fields) "
    "FROM STDIN (FORMAT binary)";

#define TERN_MESSAGE_COLUMNS "SELECT id, ts, device_ts, node, topic, payload, flags, fields "
#define TERN_MESSAGE_RANGE \
  "FROM messages WHERE device_id = $1 AND ts >= $2::int8 AND ts < $3::int8 "
constexpr const char* kSqlMessagesAsc =
    TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE "ORDER BY ts, id LIMIT $4::int8";
constexpr const char* kSqlMessagesDesc =
    TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE "ORDER BY ts DESC, id DESC LIMIT $4::int8";
constexpr const char* kSqlMessagesAscAfter = TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE
    "AND (ts, id) > ($5::int8, $6::int8) ORDER BY ts, id LIMIT $4::int8";
constexpr const char* kSqlMessagesDescAfter = TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE
    "AND (ts, id) < ($5::int8, $6::int8) ORDER BY ts DESC, id DESC LIMIT $4::int8";
#undef TERN_MESSAGE_COLUMNS
#undef TERN_MESSAGE_RANGE
// Buckets are floored (not truncated) so times before the epoch land in the right one.
// json_typeof keeps booleans and strings out.
constexpr const char* kSqlSeriesHead = "SELECT b, count(*)::int8, ";
constexpr const char* kSqlSeriesTail =
    "::float8 FROM (SELECT ts - (((ts % $4::int8) + $4::int8) % $4::int8) AS b, ts, id, "
    "(fields->>$5::text)::float8 AS v FROM messages "
    "WHERE device_id = $1 AND ts >= $2::int8 AND ts < $3::int8 "
    "AND json_typeof(fields->$5::text) = 'number') AS s GROUP BY b ORDER BY b";
// COLLATE "C": byte order, the same as the SQLite backend whatever the database locale.
#define TERN_DEVICE_COLUMNS                                                                  \
  "SELECT d.device_id, d.first_seen, d.last_seen, d.message_count, d.latest, d.attributes, " \
  "(SELECT coalesce(json_object_agg(t.key, t.value), '{}'::json) FROM device_tags t "        \
  "WHERE t.device_id = d.device_id), d.name, d.type "
constexpr const char* kSqlListDevices =
    TERN_DEVICE_COLUMNS "FROM devices d ORDER BY d.device_id COLLATE \"C\"";
constexpr const char* kSqlGetDevice = TERN_DEVICE_COLUMNS "FROM devices d WHERE d.device_id = $1";
// A sequential scan of the devices table (no history): an index on last_seen would cost every
// ingest batch's upsert more than this saves a poll every few seconds.
constexpr const char* kSqlDevicesSeenSince = TERN_DEVICE_COLUMNS
    "FROM devices d WHERE d.last_seen >= $1::int8 "
    "AND d.first_seen <= d.last_seen ORDER BY d.device_id COLLATE \"C\"";
constexpr const char* kSqlDevicesWithTag = TERN_DEVICE_COLUMNS
    "FROM device_tags g JOIN devices d ON d.device_id = g.device_id "
    "WHERE g.key = $1 AND g.value = $2 ORDER BY d.device_id COLLATE \"C\"";
#undef TERN_DEVICE_COLUMNS
// Device updates (API writes): a device that does not exist yet is registered with no messages.
constexpr const char* kSqlCheckObject = "SELECT json_typeof($1::json)";
constexpr const char* kSqlRegisterDevice =
    "INSERT INTO devices(device_id, first_seen, last_seen, message_count, latest) "
    "VALUES ($1, $2::int8, $3::int8, 0, '{}') ON CONFLICT (device_id) DO NOTHING";
constexpr const char* kSqlSetAttributes =
    "UPDATE devices SET attributes = $2::json WHERE device_id = $1";
constexpr const char* kSqlSetName = "UPDATE devices SET name = $2 WHERE device_id = $1";
constexpr const char* kSqlSetType = "UPDATE devices SET type = $2 WHERE device_id = $1";
constexpr const char* kSqlClearTags = "DELETE FROM device_tags WHERE device_id = $1";
constexpr const char* kSqlInsertTags =
    "INSERT INTO device_tags(device_id, key, value) SELECT $1, key, value "
    "FROM json_each_text($2::json)";
// Deleting a device: its history in chunks through the (device_id, ts, id) index, each its own
// statement with the count following, then what is left and the device row in one transaction.
constexpr const char* kSqlDeviceExists = "SELECT 1 FROM devices WHERE device_id = $1";
constexpr const char* kSqlDeleteDeviceChunk =
    "WITH d AS (DELETE FROM messages WHERE device_id = $1 AND (ts, id) IN "
    "(SELECT ts, id FROM messages WHERE device_id = $1 ORDER BY ts, id LIMIT $2::int8) "
    "RETURNING 1), n AS (SELECT count(*)::int8 AS c FROM d), "
    "u AS (UPDATE devices SET message_count = message_count - n.c FROM n "
    "WHERE device_id = $1 AND n.c > 0) SELECT c FROM n";
constexpr const char* kSqlDeleteDeviceMinutes =
    "WITH d AS (DELETE FROM tern_rollup_1m WHERE device_id = $1 AND (bucket, key) IN "
    "(SELECT bucket, key FROM tern_rollup_1m WHERE device_id = $1 LIMIT $2::int8) RETURNING 1) "
    "SELECT count(*)::int8 FROM d";
constexpr const char* kSqlDeleteDeviceHours =
    "WITH d AS (DELETE FROM tern_rollup_1h WHERE device_id = $1 AND (bucket, key) IN "
    "(SELECT bucket, key FROM tern_rollup_1h WHERE device_id = $1 LIMIT $2::int8) RETURNING 1) "
    "SELECT count(*)::int8 FROM d";
// The rollup lock, for this transaction: a rollup run (which holds it for the whole run) writes
// rollups from its own snapshot, so the last step waits for it rather than leave some behind.
constexpr const char* kSqlDeleteDeviceLock = "SELECT pg_advisory_xact_lock(7384612094)";
constexpr const char* kSqlDeleteDeviceRest[] = {
    "DELETE FROM devices WHERE device_id = $1",
    "DELETE FROM messages WHERE device_id = $1",
    "DELETE FROM device_tags WHERE device_id = $1",
    "DELETE FROM tern_rollup_1m WHERE device_id = $1",
    "DELETE FROM tern_rollup_1h WHERE device_id = $1",
    "DELETE FROM tern_rollup_dirty WHERE device_id = $1",
};
// Every message bumps its device's count in the same transaction, so this is exact without a
// count(*) over every partition.
constexpr const char* kSqlCountMessages =
    "SELECT coalesce(sum(message_count), 0)::int8 FROM devices";
constexpr const char* kSqlLayout =
    "SELECT CASE WHEN c.relkind = 'p' THEN 'partitioned' "
    "WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') "
    "THEN 'timescaledb' ELSE 'plain' END "
    "FROM pg_class c WHERE c.oid = to_regclass('messages')";
// Retention. Whole partitions that end at or before the cutoff are detached and renamed
// tern_expired_<oid> in one short transaction (the only moment that needs a lock on messages),
// then counted per device and dropped in a second one. A run interrupted between the two
// leaves a tern_expired_ table, which the next run finishes first, so counts stay exact.
// The upper bound comes from the partition's bound expression, so partitions of any name count.
constexpr const char* kSqlPartitionsBefore =
    "SELECT c.oid::int8, c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass('messages') AND "
    "substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''?(-?[0-9]+)''?\\)')::int8 "
    "<= $1::int8 ORDER BY 1";
constexpr const char* kSqlExpiredTables =
    "SELECT c.relname::text FROM pg_class c WHERE c.relkind = 'r' "
    "AND c.relname LIKE 'tern\\_expired\\_%' "
    "AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('messages')) "
    "ORDER BY 1";
constexpr const char* kSqlDevicesBefore =
    "SELECT device_id FROM devices WHERE first_seen < $1::int8 AND message_count > 0 "
    "ORDER BY device_id";
// Chunks go through the (device_id, ts, id) index; each is its own short transaction.
constexpr std::int64_t kRetentionChunk = 5000;
constexpr const char* kSqlDeleteChunk =
    "WITH d AS (DELETE FROM messages WHERE device_id = $1 AND ts < $2::int8 AND (ts, id) IN "
    "(SELECT ts, id FROM messages WHERE device_id = $1 AND ts < $2::int8 ORDER BY ts, id "
    "LIMIT $3::int8) RETURNING 1) SELECT count(*)::int8 FROM d";
// Also run when nothing was deleted row by row: a dropped partition may have held the
// device's oldest messages. Writes only when something changes.
constexpr const char* kSqlAfterDelete =
    "UPDATE devices SET message_count = message_count - $2::int8, "
    "first_seen = coalesce((SELECT min(ts) FROM messages WHERE device_id = $1), first_seen) "
    "WHERE device_id = $1 AND ($2::int8 > 0 OR first_seen IS DISTINCT FROM "
    "coalesce((SELECT min(ts) FROM messages WHERE device_id = $1), first_seen))";
constexpr const char* kSqlDropKeyChunk =
    "UPDATE messages SET fields = (SELECT coalesce(json_object_agg(e.key, e.value ORDER BY e.n), "
    "'{}'::json) FROM json_each(messages.fields) WITH ORDINALITY AS e(key, value, n) "
    "WHERE e.key <> $3::text) "
    "WHERE device_id = $1 AND ts >= $4::int8 AND ts < $2::int8 AND (ts, id) IN "
    "(SELECT ts, id FROM messages WHERE device_id = $1 AND ts >= $4::int8 AND ts < $2::int8 "
    "AND fields->$3::text IS NOT NULL ORDER BY ts, id LIMIT $5::int8)";
constexpr const char* kSqlGetProgress =
    "SELECT done_before FROM tern_retention_progress WHERE key = $1";
constexpr const char* kSqlSetProgress =
    "INSERT INTO tern_retention_progress(key, done_before) VALUES ($1, $2::int8) "
    "ON CONFLICT(key) DO UPDATE SET done_before = excluded.done_before";
// Rollups.
// Also the transaction's id: when the COMMIT's reply is lost, txid_status() tells the outcome.
constexpr const char* kSqlPendingForShare =
    "SELECT pending, txid_current() FROM tern_rollup_state WHERE id = 1 FOR SHARE";
constexpr const char* kSqlTxidCurrent = "SELECT txid_current()";
constexpr const char* kSqlTxidStatus = "SELECT txid_status($1::int8)";
constexpr const char* kSqlMarkDirty =
    "INSERT INTO tern_rollup_dirty(device_id, bucket) VALUES ($1, $2::int8)";
constexpr const char* kSqlRollupLock = "SELECT pg_advisory_lock(7384612094)";
constexpr const char* kSqlRollupUnlock = "SELECT pg_advisory_unlock(7384612094)";
constexpr const char* kSqlStateForUpdate =
    "SELECT watermark, pending FROM tern_rollup_state WHERE id = 1 FOR UPDATE";
constexpr const char* kSqlMinFirstSeen =
    "SELECT min(first_seen)::int8 FROM devices WHERE message_count > 0";
constexpr const char* kSqlSetPending =
    "UPDATE tern_rollup_state SET pending = $1::int8 WHERE id = 1";
constexpr const char* kSqlSetWatermark =
    "UPDATE tern_rollup_state SET watermark = greatest(watermark, $1::int8) WHERE id = 1";
constexpr const char* kSqlDirtyTable =
    "CREATE TEMP TABLE tern_dirty_now(device_id text, bucket bigint) ON COMMIT DROP";
constexpr const char* kSqlTouchedTable =
    "CREATE TEMP TABLE tern_touched(device_id text, hour bigint, minutes bigint) ON COMMIT DROP";
// Marks from after this transaction's snapshot stay for the next run.
constexpr const char* kSqlTakeDirty =
    "WITH d AS (DELETE FROM tern_rollup_dirty RETURNING device_id, bucket) "
    "INSERT INTO tern_dirty_now SELECT DISTINCT device_id, bucket FROM d WHERE bucket < $1::int8";
constexpr const char* kSqlCountDirty = "SELECT count(*)::int8 FROM tern_dirty_now";
// first/last: the value of the smallest/largest (ts, id), as the raw query orders them.
#define TERN_ROLLUP_SET                                                                     \
  "ON CONFLICT (device_id, bucket, key) DO UPDATE SET n = excluded.n, sum = excluded.sum, " \
  "min = excluded.min, max = excluded.max, first_ts = excluded.first_ts, "                  \
  "first = excluded.first, last_ts = excluded.last_ts, last = excluded.last"
constexpr const char* kSqlRollMinutes =
    "WITH ins AS (INSERT INTO tern_rollup_1m(device_id, bucket, key, n, sum, min, max, first_ts, "
    "first, last_ts, last) "
    "SELECT device_id, b, key, count(*), sum(v), min(v), max(v), min(ts), "
    "(array_agg(v ORDER BY ts, id))[1], max(ts), (array_agg(v ORDER BY ts DESC, id DESC))[1] "
    "FROM (SELECT m.device_id, m.ts, m.id, m.ts - (((m.ts % 60000000) + 60000000) % 60000000) "
    "AS b, j.key, j.value::text::float8 AS v FROM messages m, json_each(m.fields) j "
    "WHERE m.ts >= $1::int8 AND m.ts < $2::int8 AND json_typeof(j.value) = 'number' "
    "UNION ALL "
    "SELECT m.device_id, m.ts, m.id, d.bucket, j.key, j.value::text::float8 "
    "FROM tern_dirty_now d JOIN messages m ON m.device_id = d.device_id "
    "AND m.ts >= d.bucket AND m.ts < d.bucket + 60000000, json_each(m.fields) j "
    "WHERE json_typeof(j.value) = 'number') AS s "
    "GROUP BY device_id, b, key " TERN_ROLLUP_SET
    " RETURNING device_id, bucket) "
    "INSERT INTO tern_touched SELECT DISTINCT device_id, bucket - (((bucket % 3600000000) + "
    "3600000000) % 3600000000) "
    "AS hour, count(*) OVER () AS minutes FROM ins";
constexpr const char* kSqlCountMinutes =
    "SELECT coalesce(sum(minutes), 0)::int8 FROM (SELECT DISTINCT minutes FROM tern_touched) t";
// Queries use an hour's rollup only once the watermark has passed its end (rollup::query), so
// an hour is built once, when it is complete ($1: the new watermark), not in every run while it
// fills: the complete hours of the minutes just written, and the hour that held the old
// watermark ($2) once complete, for every device, as some sent nothing since.
constexpr const char* kSqlRollHours =
    "INSERT INTO tern_rollup_1h(device_id, bucket, key, n, sum, min, max, first_ts, first, "
    "last_ts, last) "
    "SELECT r.device_id, t.hour, r.key, sum(r.n)::int8, sum(r.sum), min(r.min), max(r.max), "
    "min(r.first_ts), (array_agg(r.first ORDER BY r.first_ts))[1], max(r.last_ts), "
    "(array_agg(r.last ORDER BY r.last_ts DESC))[1] "
    "FROM (SELECT device_id, hour FROM tern_touched WHERE hour <= $1::int8 - 3600000000 "
    "UNION SELECT device_id, w.hour FROM devices, (SELECT $2::int8 - ((($2::int8 % 3600000000) "
    "+ 3600000000) % 3600000000) AS hour) w "
    "WHERE w.hour < $2::int8 AND w.hour + 3600000000 <= $1::int8) t "
    "JOIN tern_rollup_1m r "
    "ON r.device_id = t.device_id AND r.bucket >= t.hour AND r.bucket < t.hour + 3600000000 "
    "GROUP BY r.device_id, t.hour, r.key " TERN_ROLLUP_SET;
#undef TERN_ROLLUP_SET
constexpr const char* kSqlRollupQueryState =
    "SELECT watermark, greatest(floor, coalesce((SELECT floor FROM tern_rollup_key_floor "
    "WHERE key = $1), floor)) FROM tern_rollup_state WHERE id = 1";
constexpr const char* kSqlDirtyInRange =
    "SELECT DISTINCT bucket FROM tern_rollup_dirty WHERE device_id = $1 AND bucket >= $2::int8 "
    "AND bucket < $3::int8";
constexpr const char* kSqlRolledMinutes =
    "SELECT bucket, n, sum, min, max, first_ts, first, last_ts, last FROM tern_rollup_1m "
    "WHERE device_id = $1 AND bucket >= $2::int8 AND bucket < $3::int8 AND key = $4 "
    "ORDER BY bucket";
constexpr const char* kSqlRolledHours =
    "SELECT bucket, n, sum, min, max, first_ts, first, last_ts, last FROM tern_rollup_1h "
    "WHERE device_id = $1 AND bucket >= $2::int8 AND bucket < $3::int8 AND key = $4 "
    "ORDER BY bucket";
constexpr const char* kSqlRawValues =
    "SELECT ts, id, (fields->>$4::text)::float8 FROM messages WHERE device_id = $1 "
    "AND ts >= $2::int8 AND ts < $3::int8 AND json_typeof(fields->$4::text) = 'number' "
    "ORDER BY ts, id";
constexpr const char* kSqlRaiseFloor =
    "UPDATE tern_rollup_state SET floor = greatest(floor, $1::int8) WHERE id = 1";
constexpr const char* kSqlRaiseKeyFloor =
    "INSERT INTO tern_rollup_key_floor(key, floor) VALUES ($1, $2::int8) ON CONFLICT(key) "
    "DO UPDATE SET floor = greatest(tern_rollup_key_floor.floor, excluded.floor)";
constexpr const char* kSqlDeleteOldMinutes =
    "DELETE FROM tern_rollup_1m WHERE device_id = $1 AND bucket < $2::int8";
constexpr const char* kSqlDeleteOldHours =
    "DELETE FROM tern_rollup_1h WHERE device_id = $1 AND bucket < $2::int8";
constexpr const char* kSqlDeleteOldDirty = "DELETE FROM tern_rollup_dirty WHERE bucket < $1::int8";
constexpr const char* kSqlDeleteOldKeyMinutes =
    "DELETE FROM tern_rollup_1m WHERE device_id = $1 AND bucket < $2::int8 AND key = $3";
constexpr const char* kSqlDeleteOldKeyHours =
    "DELETE FROM tern_rollup_1h WHERE device_id = $1 AND bucket < $2::int8 AND key = $3";
// One run rolls up at most a day past the watermark (a catch-up takes one run per day).
constexpr std::int64_t kRollupMaxSpanUs = 86'400'000'000;
constexpr const char* kSqlPartitions =
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass('messages')";

// --- libpq helpers -----------------------------------------------------------------------------

struct ConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// libpq messages end in a newline and may span lines; health and logs want one line.
std::string oneLine(const char* text) {
  std::string out = text != nullptr ? text : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out;
}

core::Error pgError(PGconn* conn, std::string_view what) {
  std::string message = "postgres: ";
  message += what;
  message += ": ";
  message += conn != nullptr ? oneLine(PQerrorMessage(conn)) : "out of memory";
  return core::Error{std::move(message)};
}

core::Error resultError(PGconn* conn, const PGresult* result, std::string_view what) {
  if (result == nullptr) {
    return pgError(conn, what);
  }
  std::string message = "postgres: ";
  message += what;
  message += ": ";
  message += oneLine(PQresultErrorMessage(result));
  return core::Error{std::move(message)};
}

bool broken(PGconn* conn) {
  return conn == nullptr || PQstatus(conn) != CONNECTION_OK;
}

// Runs a statement with text parameters; results in binary (resultFormat 1), so integers,
// doubles and bytea need no text parsing. Checks `expected` status.
core::Result<ResultPtr> exec(PGconn* conn, const char* sql, std::string_view what,
                             const std::vector<std::string>& params = {},
                             ExecStatusType expected = PGRES_TUPLES_OK) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  values.reserve(params.size());
  lengths.reserve(params.size());
  for (const std::string& param : params) {
    values.push_back(param.c_str());
    lengths.push_back(static_cast<int>(param.size()));
  }
  ResultPtr result(PQexecParams(conn, sql, static_cast<int>(params.size()), nullptr, values.data(),
                                lengths.data(), nullptr, 1));
  if (!result || PQresultStatus(result.get()) != expected) {
    return resultError(conn, result.get(), what);
  }
  return result;
}

core::Status command(PGconn* conn, const char* sql, std::string_view what) {
  auto result = exec(conn, sql, what, {}, PGRES_COMMAND_OK);
  if (!result) {
    return result.error();
  }
  return {};
}

std::string_view cell(const PGresult* result, int row, int column) {
  return {PQgetvalue(result, row, column),
          static_cast<std::size_t>(PQgetlength(result, row, column))};
}

std::uint64_t readBigEndian(std::string_view bytes) {
  std::uint64_t value = 0;
  for (const char c : bytes) {
    value = (value << 8) | static_cast<unsigned char>(c);
  }
  return value;
}

std::int64_t cellInt64(const PGresult* result, int row, int column) {
  const std::string_view bytes = cell(result, row, column);
  const std::uint64_t raw = readBigEndian(bytes);
  if (bytes.size() == 2) {
    return static_cast<std::int16_t>(raw);
  }
  if (bytes.size() == 4) {
    return static_cast<std::int32_t>(raw);
  }
  return static_cast<std::int64_t>(raw);
}

double cellDouble(const PGresult* result, int row, int column) {
  return std::bit_cast<double>(readBigEndian(cell(result, row, column)));
}

std::string toText(std::int64_t value) {
  char buffer[24];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  return {buffer, end};
}

// PostgreSQL text rejects NUL bytes and invalid UTF-8. A record carrying them must not block
// the ingest pipeline forever (it retries a failed batch), so they become U+FFFD in text
// columns; payloads are bytea and keep every byte.
std::string_view validText(std::string_view text, std::string& scratch) {
  const auto valid = [](std::string_view s, std::size_t& bad) {
    for (std::size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      std::size_t n = 0;
      std::uint32_t cp = 0;
      if (c == 0) {
        bad = i;
        return false;
      }
      if (c < 0x80) {
        ++i;
        continue;
      }
      if ((c & 0xE0) == 0xC0) {
        n = 1;
        cp = c & 0x1F;
      } else if ((c & 0xF0) == 0xE0) {
        n = 2;
        cp = c & 0x0F;
      } else if ((c & 0xF8) == 0xF0) {
        n = 3;
        cp = c & 0x07;
      } else {
        bad = i;
        return false;
      }
      for (std::size_t k = 1; k <= n; ++k) {
        if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
          bad = i;
          return false;
        }
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      }
      const std::uint32_t minimum = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
      if (cp < minimum || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
        bad = i;
        return false;
      }
      i += n + 1;
    }
    return true;
  };
  std::size_t bad = 0;
  if (valid(text, bad)) {
    return text;
  }
  scratch.assign(text.substr(0, bad));
  std::string_view rest = text.substr(bad);
  while (!rest.empty()) {
    std::size_t nextBad = 0;
    if (valid(rest, nextBad)) {
      scratch += rest;
      break;
    }
    scratch += rest.substr(0, nextBad);
    scratch += "\xEF\xBF\xBD";
    rest = rest.substr(nextBad + 1);
  }
  return scratch;
}

// The binary COPY format: a fixed header, then per row a field count and length-prefixed
// fields in network byte order, then a -1 trailer.
class CopyBuffer {
 public:
  CopyBuffer() { reset(); }

  void reset() {
    data_.assign("PGCOPY\n\xff\r\n\0", 11);
    putInt32(0);  // flags
    putInt32(0);  // header extension length
  }
  void row(std::int16_t fields) { putInt16(fields); }
  void int64(std::int64_t value) {
    putInt32(8);
    putBigEndian(static_cast<std::uint64_t>(value), 8);
  }
  void int16(std::int16_t value) {
    putInt32(2);
    putInt16(value);
  }
  void null() { putInt32(-1); }
  void bytes(std::string_view value) {
    putInt32(static_cast<std::int32_t>(value.size()));
    data_ += value;
  }
  void text(std::string_view value) { bytes(validText(value, scratch_)); }
  // The json type's binary form is its text.
  void json(std::string_view value) { text(value); }
  // A one-dimensional text[] without NULLs, in the array binary format: dimensions, a has-null
  // flag, the element type (text), each dimension's length and lower bound, then the elements.
  template <class Strings>
  void textArray(const Strings& values) {
    constexpr std::int32_t kTextOid = 25;
    const std::size_t lengthAt = data_.size();
    putInt32(0);  // the field's length, filled in below
    putInt32(values.empty() ? 0 : 1);
    putInt32(0);
    putInt32(kTextOid);
    if (!values.empty()) {
      putInt32(static_cast<std::int32_t>(values.size()));
      putInt32(1);
    }
    for (const auto& value : values) text(value);
    const auto length = static_cast<std::uint32_t>(data_.size() - lengthAt - 4);
    for (int i = 0; i < 4; ++i) {
      data_[lengthAt + static_cast<std::size_t>(i)] =
          static_cast<char>((length >> (24 - 8 * i)) & 0xFF);
    }
  }
  const std::string& finish() {
    putInt16(-1);
    return data_;
  }

 private:
  void putBigEndian(std::uint64_t value, int size) {
    for (int shift = (size - 1) * 8; shift >= 0; shift -= 8) {
      data_ += static_cast<char>((value >> shift) & 0xFF);
    }
  }
  void putInt32(std::int32_t value) { putBigEndian(static_cast<std::uint32_t>(value), 4); }
  void putInt16(std::int16_t value) { putBigEndian(static_cast<std::uint16_t>(value), 2); }

  std::string data_;
  std::string scratch_;
};

core::Status copyIn(PGconn* conn, const char* sql, const std::string& data, std::string_view what) {
  auto start = exec(conn, sql, what, {}, PGRES_COPY_IN);
  if (!start) {
    return start.error();
  }
  if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
      PQputCopyEnd(conn, nullptr) != 1) {
    return pgError(conn, what);
  }
  core::Status status;
  // Drain every result, so the connection is ready for the next command even on failure.
  while (PGresult* raw = PQgetResult(conn)) {
    ResultPtr result(raw);
    if (status.ok() && PQresultStatus(raw) != PGRES_COMMAND_OK) {
      status = resultError(conn, raw, what);
    }
  }
  return status;
}

// --- time partitions ---------------------------------------------------------------------------

// Days since 1970-01-01 → civil date (Howard Hinnant's algorithm), for partition names.
void civilFromDays(std::int64_t days, std::int64_t& year, unsigned& month, unsigned& day) {
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0);
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) {
    --q;
  }
  return q;
}

// messages_p20260314 for daily partitions; the start time is appended for shorter ones.
std::string partitionName(std::int64_t index, std::int64_t partitionUs) {
  const std::int64_t startUs = index * partitionUs;
  const std::int64_t days = floorDiv(startUs, kUsPerDay);
  std::int64_t year = 0;
  unsigned month = 0;
  unsigned day = 0;
  civilFromDays(days, year, month, day);
  char buffer[64];
  int n = 0;
  if (partitionUs % kUsPerDay == 0) {
    n = std::snprintf(buffer, sizeof buffer, "messages_p%04lld%02u%02u",
                      static_cast<long long>(year), month, day);
  } else {
    const std::int64_t seconds = (startUs - days * kUsPerDay) / 1'000'000;
    n = std::snprintf(
        buffer, sizeof buffer, "messages_p%04lld%02u%02u_%06lld", static_cast<long long>(year),
        month, day,
        static_cast<long long>(seconds / 3600 * 10000 + seconds / 60 % 60 * 100 + seconds % 60));
  }
  std::string name(buffer, static_cast<std::size_t>(std::max(n, 0)));
  std::replace(name.begin(), name.end(), '-', 'm');  // years before 0
  return name;
}

std::string partitionDdl(std::int64_t index, std::int64_t partitionUs) {
  std::int64_t from = 0;
  std::int64_t to = 0;
  const bool fromOk = !__builtin_mul_overflow(index, partitionUs, &from);
  const bool toOk = fromOk && !__builtin_add_overflow(from, partitionUs, &to);
  std::string sql = "CREATE TABLE IF NOT EXISTS \"";
  sql += partitionName(index, partitionUs);
  sql += "\" PARTITION OF messages FOR VALUES FROM (";
  sql += fromOk ? toText(from) : std::string("MINVALUE");
  sql += ") TO (";
  sql += toOk ? toText(to) : std::string("MAXVALUE");
  sql += ")";
  return sql;
}

std::int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --- connections -------------------------------------------------------------------------------

// Connection attempts after a failure wait for a doubling delay, shared by the writer and the
// readers, so a dead database costs one quick error per call rather than a connect timeout.
class ConnectGate {
 public:
  ConnectGate(std::string url, std::chrono::milliseconds minDelay,
              std::chrono::milliseconds maxDelay)
      : url_(std::move(url)), minDelay_(minDelay), maxDelay_(maxDelay), delay_(minDelay) {}

  core::Result<ConnPtr> connect() {
    {
      std::lock_guard lock(mutex_);
      const auto now = Clock::now();
      if (now < retryAt_) {
        const auto wait =
            std::chrono::duration_cast<std::chrono::milliseconds>(retryAt_ - now).count();
        std::string message = "postgres: database unreachable (next attempt in ";
        message += std::to_string(wait);
        message += " ms): ";
        message += lastError_;
        return core::Error{std::move(message)};
      }
    }
    // Defaults first, so that the same settings in the user's URL win.
    const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {"5", "tern", url_.c_str(), nullptr};
    ConnPtr conn(PQconnectdbParams(keywords, values, 1));
    if (broken(conn.get())) {
      std::string error = conn ? oneLine(PQerrorMessage(conn.get())) : "out of memory";
      std::lock_guard lock(mutex_);
      retryAt_ = Clock::now() + delay_;
      delay_ = std::min(delay_ * 2, maxDelay_);
      lastError_ = error;
      std::string message = "postgres: connect: ";
      message += error;
      return core::Error{std::move(message)};
    }
    std::lock_guard lock(mutex_);
    if (!lastError_.empty()) {
      spdlog::info("postgres: connected again");
    }
    retryAt_ = {};
    delay_ = minDelay_;
    lastError_.clear();
    return conn;
  }

  // A connection broke: the next attempt may go ahead at once (the server may be back).
  void noteLost(std::string_view error) {
    std::lock_guard lock(mutex_);
    if (lastError_.empty()) {
      spdlog::warn("postgres: connection lost: {}", error);
      lastError_ = std::string(error);
    }
  }

 private:
  std::string url_;
  std::chrono::milliseconds minDelay_;
  std::chrono::milliseconds maxDelay_;
  std::mutex mutex_;
  std::chrono::milliseconds delay_;
  Clock::time_point retryAt_{};
  std::string lastError_;
};

class ReaderPool {
 public:
  explicit ReaderPool(ConnectGate& gate) : gate_(gate) {}

  // Runs `body(conn)` on a pooled connection. When a pooled connection turns out to be dead
  // (the server restarted since it was last used), the call is repeated once on a fresh one:
  // reads have no side effects.
  template <class T, class Body>
  core::Result<T> run(Body&& body) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool pooled = false;
      ConnPtr conn = take(pooled);
      if (!conn) {
        auto fresh = gate_.connect();
        if (!fresh) {
          return fresh.error();
        }
        conn = std::move(*fresh);
      }
      core::Result<T> result = body(conn.get());
      if (broken(conn.get())) {
        gate_.noteLost(result ? std::string_view("broken") : result.error().message);
        if (pooled && attempt == 0) {
          continue;
        }
        return result;
      }
      give(std::move(conn));
      return result;
    }
    return core::Error{"postgres: unreachable"};
  }

 private:
  ConnPtr take(bool& pooled) {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) {
      pooled = false;
      return nullptr;
    }
    ConnPtr conn = std::move(idle_.back());
    idle_.pop_back();
    pooled = true;
    return conn;
  }
  void give(ConnPtr conn) {
    if (PQtransactionStatus(conn.get()) != PQTRANS_IDLE) {
      return;
    }
    std::lock_guard lock(mutex_);
    if (idle_.size() < kMaxIdleReaders) {
      idle_.push_back(std::move(conn));
    }
  }

  ConnectGate& gate_;
  std::mutex mutex_;
  std::vector<ConnPtr> idle_;
};

// --- store -------------------------------------------------------------------------------------

struct DeviceBatch {
  std::string_view deviceId;
  std::int64_t firstSeenUs = std::numeric_limits<std::int64_t>::max();
  std::int64_t lastSeenUs = std::numeric_limits<std::int64_t>::min();
  std::int64_t count = 0;
  std::vector<std::pair<std::string_view, const FieldValue*>> latest;
  std::unordered_map<std::string_view, std::size_t> latestIndex;
};

core::Result<DeviceSummary> readDevice(const PGresult* result, int row) {
  DeviceSummary summary;
  summary.deviceId = std::string(cell(result, row, 0));
  summary.firstSeenUs = cellInt64(result, row, 1);
  summary.lastSeenUs = cellInt64(result, row, 2);
  summary.messageCount = cellInt64(result, row, 3);
  if (!parseFields(cell(result, row, 4), summary.latest)) {
    return core::Error{"postgres: latest values of device " + summary.deviceId +
                       " are not valid JSON"};
  }
  summary.attributes = std::string(cell(result, row, 5));
  summary.name = std::string(cell(result, row, 7));
  summary.type = std::string(cell(result, row, 8));
  std::vector<Field> tags;
  if (!parseFields(cell(result, row, 6), tags)) {
    return core::Error{"postgres: tags of device " + summary.deviceId + " are not valid JSON"};
  }
  for (Field& tag : tags) {
    if (auto* text = std::get_if<std::string>(&tag.value)) {
      summary.tags.emplace(std::move(tag.key), std::move(*text));
    }
  }
  return summary;
}

core::Result<std::vector<DeviceSummary>> readDevices(ReaderPool& readers, const char* sql,
                                                     const std::vector<std::string>& params);

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(const PostgresOptions& options)
      : options_(options),
        gate_(options.url, options.reconnectMin, options.reconnectMax),
        readers_(gate_),
        faultLoseCommitReplies_(options.faultLoseCommitReplies) {
    if (options_.url.empty()) {
      throw std::runtime_error("postgres: no connection URL (storage.url)");
    }
    if (options_.partitionUs <= 0) {
      throw std::runtime_error("postgres: partition length must be positive");
    }
    auto conn = gate_.connect();
    if (!conn) {
      throw std::runtime_error(conn.error().message);
    }
    writer_ = std::move(*conn);
    migrate();
    if (auto status = prepareWriter(); !status) {
      throw std::runtime_error(status.message());
    }
    if (partitioned_) {
      const std::int64_t today = floorDiv(nowUs(), options_.partitionUs);
      std::vector<std::int64_t> ahead;
      for (int i = 0; i < options_.partitionsAhead; ++i) {
        ahead.push_back(today + i);
      }
      if (auto status = ensurePartitions(ahead); !status) {
        throw std::runtime_error(status.message());
      }
    }
  }

  core::Status appendBatch(std::span<const Record> records) override;
  core::Result<std::vector<StoredRecord>> queryMessages(const MessageQuery& query) override;
  core::Result<std::vector<Bucket>> querySeries(const SeriesQuery& query) override;
  core::Result<std::vector<DeviceSummary>> listDevices() override;
  core::Result<std::optional<DeviceSummary>> getDevice(const std::string& deviceId) override;
  core::Result<std::int64_t> countMessages() override;
  std::string backendName() const override { return "postgres"; }
  core::Status check() override;
  core::Result<std::int64_t> deleteBefore(std::int64_t cutoffUs) override;
  core::Result<std::int64_t> dropKeyBefore(const std::string& key, std::int64_t cutoffUs) override;
  core::Result<DeviceSummary> updateDevice(const std::string& deviceId,
                                           const DeviceUpdate& update) override;
  core::Result<std::vector<DeviceSummary>> listDevicesSeenSince(std::int64_t sinceUs) override;
  core::Result<std::vector<DeviceSummary>> listDevicesWithTag(const std::string& key,
                                                              const std::string& value) override;
  core::Result<bool> deleteDevice(const std::string& deviceId) override;
  core::Result<std::vector<FleetDevice>> fleetLatest(const FleetLatestQuery& query) override;
  core::Result<std::vector<FleetDevice>> fleetThreshold(const FleetThresholdQuery& query) override;
  core::Result<std::vector<FleetDevice>> fleetWindowAverage(const FleetWindowQuery& query) override;
  core::Result<std::vector<FleetDailyRow>> fleetDaily(const FleetDailyQuery& query) override;
  core::Result<RollupRun> rollup(std::int64_t untilUs) override;

  core::Result<std::string> layout();

 private:
  void migrate();
  void execOrThrow(const std::string& sql, std::string_view what);
  std::string queryTextOrThrow(const char* sql, std::string_view what);
  core::Status prepareWriter();
  core::Status loadPartitions();
  core::Status ensureWriter();
  core::Status ensurePartitions(const std::vector<std::int64_t>& indexes);
  core::Status writeBatch(std::span<const Record> records, bool& commitSent);
  // After a lost COMMIT reply: asks the server whether that transaction committed and returns
  // how many leading records of `records` (the retry) are therefore already stored.
  core::Result<std::size_t> resolveUncertainCommit(std::span<const Record> records);
  void keepPartitionAhead();
  // The maintenance connection (retention), opened on demand; call with maintenanceMutex_.
  core::Result<PGconn*> maintenanceLocked();
  core::Result<std::int64_t> dropExpiredPartitions(PGconn* conn, std::int64_t cutoffUs);
  core::Result<std::int64_t> dropExpiredTable(PGconn* conn, const std::string& name);
  core::Result<std::vector<std::string>> devicesBefore(PGconn* conn, std::int64_t cutoffUs);
  core::Result<RollupRun> rollupLocked(PGconn* conn, std::int64_t untilUs);
  // The series from rollups where they are complete; nullopt: rollups cover none of it.
  core::Result<std::optional<std::vector<Bucket>>> querySeriesRolledUp(const SeriesQuery& query);

  PostgresOptions options_;
  ConnectGate gate_;
  ReaderPool readers_;
  ConnPtr writer_;  // the writer thread's only
  bool partitioned_ = false;
  std::set<std::int64_t> partitions_;  // known to exist; the writer thread's only
  CopyBuffer copy_;
  std::string scratch_;
  // Bumped when retention detaches partitions; the writer reloads its partition set then.
  std::atomic<std::uint64_t> partitionsEpoch_{0};
  std::uint64_t writerEpoch_ = 0;  // the writer thread's only
  // The transaction id of the batch being written (the writer thread's only).
  std::int64_t batchXid_ = 0;
  // A batch whose COMMIT was sent but whose reply was lost with the connection: it may or may
  // not be stored. The caller retries it (at once, or later from the spool, in order); the retry
  // skips it if it committed, so a lost reply does not store records twice.
  struct UncertainBatch {
    std::int64_t xid = 0;
    std::vector<Record> records;
  };
  std::optional<UncertainBatch> uncertain_;  // the writer thread's only
  int faultLoseCommitReplies_ = 0;
  std::mutex maintenanceMutex_;
  ConnPtr maintenance_;
};

void PostgresStore::execOrThrow(const std::string& sql, std::string_view what) {
  ResultPtr result(PQexec(writer_.get(), sql.c_str()));
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error(resultError(writer_.get(), result.get(), what).message);
  }
}

std::string PostgresStore::queryTextOrThrow(const char* sql, std::string_view what) {
  ResultPtr result(PQexec(writer_.get(), sql));
  if (!result || PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    throw std::runtime_error(resultError(writer_.get(), result.get(), what).message);
  }
  if (PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 0)) {
    return {};
  }
  return PQgetvalue(result.get(), 0, 0);
}

void PostgresStore::migrate() {
  std::string lock = "SELECT pg_advisory_lock(";
  lock += kMigrationLockKey;
  lock += ")";
  execOrThrow(lock, "lock for migration");
  try {
    execOrThrow(kSqlSchemaTable, "create schema version table");
    const std::string text = queryTextOrThrow(
        "SELECT coalesce(max(version), 0) FROM tern_schema_version", "read schema version");
    const int version = std::stoi(text.empty() ? std::string("0") : text);
    if (version > kSchemaVersion) {
      throw std::runtime_error("postgres: schema version " + std::to_string(version) +
                               " is newer than this build supports (" +
                               std::to_string(kSchemaVersion) + ")");
    }
    for (int next = version + 1; next <= kSchemaVersion; ++next) {
      std::string sql;
      bool timescale = false;
      if (next == 1) {
        // TimescaleDB only when the server offers it and it can be loaded (it needs
        // shared_preload_libraries); otherwise plain declarative partitions.
        if (options_.useTimescale &&
            !queryTextOrThrow("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
                              "look for timescaledb")
                 .empty()) {
          try {
            execOrThrow("CREATE EXTENSION IF NOT EXISTS timescaledb", "create timescaledb");
            timescale = true;
          } catch (const std::exception& e) {
            spdlog::warn("postgres: TimescaleDB unavailable, using plain partitions: {}", e.what());
          }
        }
        sql = kMigration1Devices;
        sql += timescale ? ";\n" : " PARTITION BY RANGE (ts);\n";
        if (timescale) {
          sql += "SELECT create_hypertable('messages', 'ts', chunk_time_interval => ";
          sql += toText(options_.partitionUs);
          sql += "::bigint);\n";
        }
        sql += kMigration1Index;
        sql += ";\n";
      } else if (next == 2) {
        sql = kMigration2;
        sql += ";\n";
      } else if (next == 3) {
        sql = kMigration3;
        sql += ";\n";
      } else if (next == 4) {
        sql = kMigration4;
        sql += ";\nINSERT INTO tern_rollup_state VALUES (1, ";
        const std::string none = toText(rollup::kNoWatermark);
        sql += none + ", " + none + ", " + none + ");\n";
      } else if (next == 5) {
        sql = kMigration5;
        sql += ";\n";
      } else if (next == 6) {
        sql = kMigration6;
        sql += ";\n";
      } else if (next == 7) {
        sql = kMigration7;
        // A new database takes the configured length; an older one keeps its days.
        sql += toText(version == 0 ? options_.partitionUs : kUsPerDay);
        sql += ");\n";
      }
      sql += "INSERT INTO tern_schema_version(version) VALUES (";
      sql += std::to_string(next);
      sql += ")";
      execOrThrow("BEGIN", "begin migration");
      try {
        execOrThrow(sql, "migrate to schema version " + std::to_string(next));
        execOrThrow("COMMIT", "commit migration");
      } catch (...) {
        ResultPtr(PQexec(writer_.get(), "ROLLBACK"));
        throw;
      }
      spdlog::info("postgres: schema migrated to version {}{}", next,
                   timescale ? " (TimescaleDB hypertable)" : "");
    }
  } catch (...) {
    ResultPtr(PQexec(writer_.get(), "SELECT pg_advisory_unlock_all()"));
    throw;
  }
  execOrThrow("SELECT pg_advisory_unlock_all()", "unlock after migration");
  partitioned_ = queryTextOrThrow(kSqlLayout, "read layout") == "partitioned";
  // Partitions of another length would overlap the existing ones: the database's own length
  // wins over the configured one, on every node.
  const std::string stored = queryTextOrThrow(
      "SELECT value FROM tern_settings WHERE key = 'partition_us'", "read partition length");
  const std::int64_t partitionUs = stored.empty() ? 0 : std::stoll(stored);
  if (partitionUs <= 0) {
    throw std::runtime_error("postgres: tern_settings.partition_us is missing or not positive");
  }
  if (partitionUs != options_.partitionUs) {
    spdlog::warn(
        "postgres: storage.partition is {} s but this database was created with {} s "
        "partitions; keeping {} s (the length is fixed when the database is created)",
        options_.partitionUs / 1'000'000, partitionUs / 1'000'000, partitionUs / 1'000'000);
    options_.partitionUs = partitionUs;
  }
}

// Per-connection set-up of the writer: its batch table and the partitions that exist.
core::Status PostgresStore::prepareWriter() {
  if (auto status = command(writer_.get(), kSqlBatchTable, "create batch table"); !status) {
    return status;
  }
  return loadPartitions();
}

core::Status PostgresStore::loadPartitions() {
  writerEpoch_ = partitionsEpoch_.load();
  partitions_.clear();
  if (!partitioned_) {
    return {};
  }
  auto result = exec(writer_.get(), kSqlPartitions, "list partitions");
  if (!result) {
    return result.error();
  }
  // Only names this build generates are recognised; others are left alone and re-checked by
  // CREATE TABLE IF NOT EXISTS when needed.
  std::set<std::string> names;
  for (int row = 0; row < PQntuples(result->get()); ++row) {
    names.emplace(cell(result->get(), row, 0));
  }
  const std::int64_t today = floorDiv(nowUs(), options_.partitionUs);
  for (std::int64_t index = today - 400; index <= today + 400; ++index) {
    if (names.count(partitionName(index, options_.partitionUs)) != 0) {
      partitions_.insert(index);
    }
  }
  return {};
}

core::Status PostgresStore::ensureWriter() {
  if (!broken(writer_.get())) {
    return {};
  }
  writer_.reset();
  auto conn = gate_.connect();
  if (!conn) {
    return conn.error();
  }
  writer_ = std::move(*conn);
  if (auto status = prepareWriter(); !status) {
    writer_.reset();
    return status;
  }
  return {};
}

// Partitions are created outside the batch transaction (DDL takes a strong lock on messages;
// keep it short) and remembered once they exist.
core::Status PostgresStore::ensurePartitions(const std::vector<std::int64_t>& indexes) {
  for (const std::int64_t index : indexes) {
    if (partitions_.count(index) != 0) {
      continue;
    }
    const std::string sql = partitionDdl(index, options_.partitionUs);
    if (auto status = command(writer_.get(), sql.c_str(), "create partition"); !status) {
      return status;
    }
    partitions_.insert(index);
  }
  return {};
}

core::Status PostgresStore::appendBatch(std::span<const Record> records) {
  if (records.empty()) {
    return {};
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = !broken(writer_.get());
    if (auto status = ensureWriter(); !status) {
      return status;
    }
    if (partitionsEpoch_.load() != writerEpoch_) {
      if (auto status = loadPartitions(); !status) {
        return status;
      }
    }
    if (uncertain_) {
      auto stored = resolveUncertainCommit(records);
      if (!stored) {
        return stored.error();
      }
      records = records.subspan(*stored);
      if (records.empty()) {
        return {};
      }
    }
    bool commitSent = false;
    core::Status status = writeBatch(records, commitSent);
    if (status.ok()) {
      keepPartitionAhead();
      return status;
    }
    if (broken(writer_.get())) {
      gate_.noteLost(status.message());
      writer_.reset();
      if (commitSent && batchXid_ != 0) {
        uncertain_ = UncertainBatch{batchXid_, {records.begin(), records.end()}};
        spdlog::warn(
            "postgres: the reply to COMMIT of {} records was lost ({}); the retry will "
            "ask the server whether transaction {} committed",
            records.size(), status.message(), batchXid_);
      }
      // A connection that died before COMMIT was sent committed nothing, so the batch can go
      // again at once on a fresh one (the server may have restarted since the last batch).
      // After COMMIT was sent the outcome is unknown: report the error and let the caller
      // decide.
      if (reused && !commitSent && attempt == 0) {
        continue;
      }
      return status;
    }
    // A database-side error: the transaction is rolled back; forget the partition cache in
    // case partitions were dropped behind our back.
    ResultPtr(PQexec(writer_.get(), "ROLLBACK"));
    if (auto refreshed = prepareWriter(); !refreshed) {
      writer_.reset();
    }
    return status;
  }
  return core::Error{"postgres: append failed"};
}

// Tomorrow's partition is made during the day, so the first batch after midnight does not
// wait for DDL. A failure here is only logged: the batch path creates partitions it needs.
void PostgresStore::keepPartitionAhead() {
  if (!partitioned_) {
    return;
  }
  const std::int64_t tomorrow = floorDiv(nowUs(), options_.partitionUs) + 1;
  if (partitions_.count(tomorrow) != 0) {
    return;
  }
  if (auto status = ensurePartitions({tomorrow}); !status) {
    spdlog::warn("postgres: creating the next partition: {}", status.message());
  }
}

core::Status PostgresStore::writeBatch(std::span<const Record> records, bool& commitSent) {
  // Aggregate per device first, so each device row is written once per batch.
  std::vector<DeviceBatch> devices;
  std::unordered_map<std::string_view, std::size_t> deviceIndex;
  std::vector<std::int64_t> neededPartitions;
  for (const Record& record : records) {
    auto [it, inserted] = deviceIndex.try_emplace(record.deviceId, devices.size());
    if (inserted) {
      devices.emplace_back().deviceId = record.deviceId;
    }
    DeviceBatch& device = devices[it->second];
    device.firstSeenUs = std::min(device.firstSeenUs, record.serverTimeUs);
    device.lastSeenUs = std::max(device.lastSeenUs, record.serverTimeUs);
    ++device.count;
    for (const Field& field : record.fields) {
      if (!representable(field.value)) {
        continue;
      }
      auto [keyIt, newKey] = device.latestIndex.try_emplace(field.key, device.latest.size());
      if (newKey) {
        device.latest.emplace_back(field.key, &field.value);
      } else {
        device.latest[keyIt->second].second = &field.value;  // later records win
      }
    }
    if (partitioned_) {
      const std::int64_t index = floorDiv(record.serverTimeUs, options_.partitionUs);
      if (partitions_.count(index) == 0 &&
          std::find(neededPartitions.begin(), neededPartitions.end(), index) ==
              neededPartitions.end()) {
        neededPartitions.push_back(index);
      }
    }
  }
  if (auto status = ensurePartitions(neededPartitions); !status) {
    return status;
  }

  if (auto status = command(writer_.get(), "BEGIN", "begin"); !status) {
    return status;
  }
  // A rollup run announces its target (pending) under a row lock that waits for this share
  // lock: a batch that read an older target commits before the run reads, and any later one
  // marks what falls before the target dirty.
  auto pending = exec(writer_.get(), kSqlPendingForShare, "read the rollup target");
  if (!pending) {
    return pending.error();
  }
  const bool haveState = PQntuples(pending->get()) > 0;
  const std::int64_t rolledBefore =
      haveState ? cellInt64(pending->get(), 0, 0) : rollup::kNoWatermark;
  batchXid_ = 0;
  if (haveState) {
    batchXid_ = cellInt64(pending->get(), 0, 1);
  } else {
    auto xid = exec(writer_.get(), kSqlTxidCurrent, "read the transaction id");
    if (!xid) {
      return xid.error();
    }
    batchXid_ = cellInt64(xid->get(), 0, 0);
  }
  copy_.reset();
  for (const DeviceBatch& device : devices) {
    scratch_.clear();
    bool first = true;
    for (const auto& [key, value] : device.latest) {
      appendJsonMember(scratch_, first, key, *value);
    }
    scratch_ += first ? "{}" : "}";
    copy_.row(6);
    copy_.text(device.deviceId);
    copy_.int64(device.firstSeenUs);
    copy_.int64(device.lastSeenUs);
    copy_.int64(device.count);
    copy_.json(scratch_);
    copy_.textArray(device.latest | std::views::keys);
  }
  if (auto status = copyIn(writer_.get(), kSqlCopyDevices, copy_.finish(), "copy devices");
      !status) {
    return status;
  }
  if (auto status = command(writer_.get(), kSqlUpsertDevices, "upsert devices"); !status) {
    return status;
  }

  copy_.reset();
  for (const Record& record : records) {
    copy_.row(8);
    copy_.text(record.deviceId);
    copy_.int64(record.serverTimeUs);
    if (record.deviceTimeUs) {
      copy_.int64(*record.deviceTimeUs);
    } else {
      copy_.null();
    }
    copy_.text(record.nodeId);
    copy_.text(record.topic);
    copy_.bytes(record.payload);
    copy_.int16(record.payloadIsJson ? static_cast<std::int16_t>(kFlagPayloadJson) : 0);
    // Fields come from a JSON payload or from a decoder (a tracker's binary frame): keep both.
    if (record.payloadIsJson || !record.fields.empty()) {
      scratch_.clear();
      appendJsonObject(scratch_, record.fields);
      copy_.json(scratch_);
    } else {
      copy_.null();
    }
  }
  if (auto status = copyIn(writer_.get(), kSqlCopyMessages, copy_.finish(), "copy messages");
      !status) {
    return status;
  }
  if (rolledBefore != rollup::kNoWatermark) {
    std::set<std::pair<std::string_view, std::int64_t>> late;
    for (const Record& record : records) {
      if (record.serverTimeUs < rolledBefore) {
        late.emplace(record.deviceId, rollup::floorTo(record.serverTimeUs, rollup::kMinuteUs));
      }
    }
    for (const auto& [device, minute] : late) {
      auto marked =
          exec(writer_.get(), kSqlMarkDirty, "mark a rolled-up minute dirty",
               {std::string(validText(device, scratch_)), toText(minute)}, PGRES_COMMAND_OK);
      if (!marked) {
        return marked.error();
      }
    }
  }
  commitSent = true;
  if (faultLoseCommitReplies_ > 0) {
    --faultLoseCommitReplies_;
    if (PQsendQuery(writer_.get(), "COMMIT") == 1) {
      while (PQflush(writer_.get()) == 1) {
      }
    }
    ::shutdown(PQsocket(writer_.get()), SHUT_RDWR);
    while (PGresult* lost = PQgetResult(writer_.get())) {
      PQclear(lost);
    }
    return core::Error{"postgres: commit: reply lost (fault injected)"};
  }
  return command(writer_.get(), "COMMIT", "commit");
}

namespace {
// The fields that tell one record from another, for matching a retried batch.
bool sameRecord(const Record& a, const Record& b) {
  return a.serverTimeUs == b.serverTimeUs && a.deviceId == b.deviceId && a.topic == b.topic &&
         a.nodeId == b.nodeId && a.deviceTimeUs == b.deviceTimeUs && a.payload == b.payload;
}
}  // namespace

core::Result<std::size_t> PostgresStore::resolveUncertainCommit(std::span<const Record> records) {
  auto answer = exec(writer_.get(), kSqlTxidStatus, "ask for an earlier commit's outcome",
                     {toText(uncertain_->xid)});
  if (!answer) {
    return answer.error();
  }
  const PGresult* result = answer->get();
  const bool known = PQntuples(result) > 0 && PQgetisnull(result, 0, 0) == 0;
  const std::string_view outcome = known ? cell(result, 0, 0) : std::string_view("unknown");
  if (outcome == "in progress") {
    // The server has not finished with the dead connection's transaction yet.
    return core::Error{"postgres: an earlier batch's commit is still in progress; retrying"};
  }
  if (outcome != "committed") {
    spdlog::info("postgres: transaction {} did not commit ({}); its records are written again",
                 uncertain_->xid, outcome);
    uncertain_.reset();
    return std::size_t{0};
  }
  // Committed: the retry starts with those records (same batch, or the spool replaying it).
  std::vector<Record>& stored = uncertain_->records;
  std::size_t same = 0;
  while (same < stored.size() && same < records.size() && sameRecord(stored[same], records[same])) {
    ++same;
  }
  if (same == 0) {
    spdlog::warn(
        "postgres: transaction {} committed, but the next batch does not start with its "
        "records; writing it as it is",
        uncertain_->xid);
    uncertain_.reset();
    return std::size_t{0};
  }
  spdlog::info("postgres: transaction {} had committed; skipping its {} records in the retry",
               uncertain_->xid, same);
  stored.erase(stored.begin(), stored.begin() + static_cast<std::ptrdiff_t>(same));
  if (stored.empty()) {
    uncertain_.reset();
  }
  return same;
}

core::Result<std::vector<StoredRecord>> PostgresStore::queryMessages(const MessageQuery& query) {
  if (query.afterId && !query.afterTimeUs) {
    return core::Error{"afterId needs afterTimeUs"};
  }
  const bool after = query.afterTimeUs.has_value();
  const char* sql = query.descending ? (after ? kSqlMessagesDescAfter : kSqlMessagesDesc)
                                     : (after ? kSqlMessagesAscAfter : kSqlMessagesAsc);
  std::vector<std::string> params{query.deviceId, toText(query.fromUs), toText(query.toUs),
                                  toText(query.limit)};
  if (after) {
    // Without an id the whole cursor timestamp counts as already seen.
    const std::int64_t defaultId = query.descending ? std::numeric_limits<std::int64_t>::min()
                                                    : std::numeric_limits<std::int64_t>::max();
    params.push_back(toText(*query.afterTimeUs));
    params.push_back(toText(query.afterId.value_or(defaultId)));
  }
  return readers_.run<std::vector<StoredRecord>>(
      [&](PGconn* conn) -> core::Result<std::vector<StoredRecord>> {
        auto result = exec(conn, sql, "query messages", params);
        if (!result) {
          return result.error();
        }
        const PGresult* rows = result->get();
        std::vector<StoredRecord> out;
        out.reserve(static_cast<std::size_t>(PQntuples(rows)));
        for (int row = 0; row < PQntuples(rows); ++row) {
          StoredRecord& stored = out.emplace_back();
          stored.id = cellInt64(rows, row, 0);
          Record& record = stored.record;
          record.deviceId = query.deviceId;
          record.serverTimeUs = cellInt64(rows, row, 1);
          if (!PQgetisnull(rows, row, 2)) {
            record.deviceTimeUs = cellInt64(rows, row, 2);
          }
          record.nodeId = std::string(cell(rows, row, 3));
          record.topic = std::string(cell(rows, row, 4));
          record.payload = std::string(cell(rows, row, 5));
          record.payloadIsJson = (cellInt64(rows, row, 6) & kFlagPayloadJson) != 0;
          if (!PQgetisnull(rows, row, 7) && !parseFields(cell(rows, row, 7), record.fields)) {
            return core::Error{"postgres: stored fields of message " + toText(stored.id) +
                               " are not valid JSON"};
          }
        }
        return out;
      });
}

core::Result<std::vector<Bucket>> PostgresStore::querySeries(const SeriesQuery& query) {
  if (query.bucketUs <= 0) {
    return core::Error{"bucket must be positive"};
  }
  if (query.useRollups && rollup::rollupUnit(query)) {
    auto rolled = querySeriesRolledUp(query);
    if (!rolled) {
      return rolled.error();
    }
    if (rolled->has_value()) {
      return std::move(**rolled);
    }
  }
  std::string sql = kSqlSeriesHead;
  switch (query.aggregate) {
    case Aggregate::kAvg:
      sql += "avg(v)";
      break;
    case Aggregate::kMin:
      sql += "min(v)";
      break;
    case Aggregate::kMax:
      sql += "max(v)";
      break;
    case Aggregate::kSum:
      sql += "sum(v)";
      break;
    case Aggregate::kCount:
      sql += "count(*)";
      break;
    // The value of the bucket's earliest/latest record; ties broken by id, as in SQLite.
    case Aggregate::kFirst:
      sql += "(array_agg(v ORDER BY ts, id))[1]";
      break;
    case Aggregate::kLast:
      sql += "(array_agg(v ORDER BY ts DESC, id DESC))[1]";
      break;
  }
  sql += kSqlSeriesTail;
  const std::vector<std::string> params{query.deviceId, toText(query.fromUs), toText(query.toUs),
                                        toText(query.bucketUs), query.key};
  return readers_.run<std::vector<Bucket>>([&](PGconn* conn) -> core::Result<std::vector<Bucket>> {
    auto result = exec(conn, sql.c_str(), "query series", params);
    if (!result) {
      return result.error();
    }
    const PGresult* rows = result->get();
    std::vector<Bucket> out;
    out.reserve(static_cast<std::size_t>(PQntuples(rows)));
    for (int row = 0; row < PQntuples(rows); ++row) {
      out.push_back(
          Bucket{cellInt64(rows, row, 0), cellDouble(rows, row, 2), cellInt64(rows, row, 1)});
    }
    return out;
  });
}

core::Result<std::vector<DeviceSummary>> PostgresStore::listDevices() {
  return readDevices(readers_, kSqlListDevices, {});
}

core::Result<std::vector<DeviceSummary>> PostgresStore::listDevicesSeenSince(std::int64_t sinceUs) {
  return readDevices(readers_, kSqlDevicesSeenSince, {toText(sinceUs)});
}

core::Result<std::vector<DeviceSummary>> PostgresStore::listDevicesWithTag(
    const std::string& key, const std::string& value) {
  std::string keyScratch;
  std::string valueScratch;
  return readDevices(
      readers_, kSqlDevicesWithTag,
      {std::string(validText(key, keyScratch)), std::string(validText(value, valueScratch))});
}

core::Result<std::vector<DeviceSummary>> readDevices(ReaderPool& readers, const char* sql,
                                                     const std::vector<std::string>& params) {
  return readers.run<std::vector<DeviceSummary>>(
      [&](PGconn* conn) -> core::Result<std::vector<DeviceSummary>> {
        auto result = exec(conn, sql, "list devices", params);
        if (!result) {
          return result.error();
        }
        std::vector<DeviceSummary> out;
        for (int row = 0; row < PQntuples(result->get()); ++row) {
          auto summary = readDevice(result->get(), row);
          if (!summary) {
            return summary.error();
          }
          out.push_back(std::move(*summary));
        }
        return out;
      });
}

core::Result<std::optional<DeviceSummary>> PostgresStore::getDevice(const std::string& deviceId) {
  return readers_.run<std::optional<DeviceSummary>>(
      [&](PGconn* conn) -> core::Result<std::optional<DeviceSummary>> {
        auto result = exec(conn, kSqlGetDevice, "get device", {deviceId});
        if (!result) {
          return result.error();
        }
        if (PQntuples(result->get()) == 0) {
          return std::optional<DeviceSummary>();
        }
        auto summary = readDevice(result->get(), 0);
        if (!summary) {
          return summary.error();
        }
        return std::optional<DeviceSummary>(std::move(*summary));
      });
}

core::Result<std::int64_t> PostgresStore::countMessages() {
  return readers_.run<std::int64_t>([&](PGconn* conn) -> core::Result<std::int64_t> {
    auto result = exec(conn, kSqlCountMessages, "count messages");
    if (!result) {
      return result.error();
    }
    return cellInt64(result->get(), 0, 0);
  });
}

core::Status PostgresStore::check() {
  auto result = readers_.run<bool>([&](PGconn* conn) -> core::Result<bool> {
    auto ping = exec(conn, "SELECT 1", "check");
    if (!ping) {
      return ping.error();
    }
    return true;
  });
  if (!result) {
    return result.error();
  }
  return {};
}

// --- retention ---------------------------------------------------------------------------------

std::string quoteIdent(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    out += c;
    if (c == '"') {
      out += '"';
    }
  }
  out += '"';
  return out;
}

// After a failed statement inside BEGIN … COMMIT: leave the connection usable again.
void rollback(PGconn* conn) {
  if (!broken(conn) && PQtransactionStatus(conn) != PQTRANS_IDLE) {
    ResultPtr(PQexec(conn, "ROLLBACK"));
  }
}

core::Result<PGconn*> PostgresStore::maintenanceLocked() {
  if (broken(maintenance_.get())) {
    maintenance_.reset();
    auto conn = gate_.connect();
    if (!conn) {
      return conn.error();
    }
    maintenance_ = std::move(*conn);
  }
  return maintenance_.get();
}

// Counts a detached partition's messages per device into devices.message_count and drops it,
// in one transaction. Returns the number of messages it held.
core::Result<std::int64_t> PostgresStore::dropExpiredTable(PGconn* conn, const std::string& name) {
  const std::string table = quoteIdent(name);
  std::string count = "WITH c AS (SELECT device_id, count(*) AS n FROM ";
  count += table;
  count +=
      " GROUP BY device_id), u AS (UPDATE devices d SET message_count = d.message_count - c.n "
      "FROM c WHERE d.device_id = c.device_id) SELECT coalesce(sum(n), 0)::int8 FROM c";
  std::string drop = "DROP TABLE ";
  drop += table;
  if (auto status = command(conn, "BEGIN", "begin retention"); !status) {
    return core::Error{status.message()};
  }
  auto counted = exec(conn, count.c_str(), "count an expired partition");
  if (!counted) {
    rollback(conn);
    return counted.error();
  }
  const std::int64_t n = cellInt64(counted->get(), 0, 0);
  if (auto status = command(conn, drop.c_str(), "drop an expired partition"); !status) {
    rollback(conn);
    return core::Error{status.message()};
  }
  if (auto status = command(conn, "COMMIT", "commit retention"); !status) {
    return core::Error{status.message()};
  }
  return n;
}

core::Result<std::int64_t> PostgresStore::dropExpiredPartitions(PGconn* conn,
                                                                std::int64_t cutoffUs) {
  std::int64_t total = 0;
  // Leftovers of an interrupted run first.
  auto leftovers = exec(conn, kSqlExpiredTables, "list expired partitions");
  if (!leftovers) {
    return leftovers.error();
  }
  for (int row = 0; row < PQntuples(leftovers->get()); ++row) {
    auto n = dropExpiredTable(conn, std::string(cell(leftovers->get(), row, 0)));
    if (!n) {
      return n.error();
    }
    total += *n;
  }
  auto expired = exec(conn, kSqlPartitionsBefore, "list expired partitions", {toText(cutoffUs)});
  if (!expired) {
    return expired.error();
  }
  for (int row = 0; row < PQntuples(expired->get()); ++row) {
    std::string detached = "tern_expired_";
    detached += toText(cellInt64(expired->get(), row, 0));
    // DETACH needs an exclusive lock on messages: wait for it only so long, rather than
    // queue every reader and the writer behind a long-running query.
    std::string sql = "ALTER TABLE messages DETACH PARTITION ";
    sql += quoteIdent(cell(expired->get(), row, 1));
    std::string rename = "ALTER TABLE ";
    rename += quoteIdent(cell(expired->get(), row, 1));
    rename += " RENAME TO ";
    rename += quoteIdent(detached);
    core::Status status = command(conn, "BEGIN", "begin retention");
    if (status) {
      status = command(conn, "SET LOCAL lock_timeout = '10s'", "set lock timeout");
    }
    if (status) {
      status = command(conn, sql.c_str(), "detach an expired partition");
    }
    if (status) {
      status = command(conn, rename.c_str(), "rename an expired partition");
    }
    if (status) {
      status = command(conn, "COMMIT", "commit retention");
    }
    if (!status) {
      rollback(conn);
      return core::Error{status.message()};
    }
    partitionsEpoch_.fetch_add(1);
    auto n = dropExpiredTable(conn, detached);
    if (!n) {
      return n.error();
    }
    total += *n;
  }
  return total;
}

core::Result<std::vector<std::string>> PostgresStore::devicesBefore(PGconn* conn,
                                                                    std::int64_t cutoffUs) {
  auto result = exec(conn, kSqlDevicesBefore, "list devices for retention", {toText(cutoffUs)});
  if (!result) {
    return result.error();
  }
  std::vector<std::string> devices;
  devices.reserve(static_cast<std::size_t>(PQntuples(result->get())));
  for (int row = 0; row < PQntuples(result->get()); ++row) {
    devices.emplace_back(cell(result->get(), row, 0));
  }
  return devices;
}

core::Result<std::int64_t> PostgresStore::deleteBefore(std::int64_t cutoffUs) {
  std::lock_guard lock(maintenanceMutex_);
  auto conn = maintenanceLocked();
  if (!conn) {
    return conn.error();
  }
  // Before any message goes: from now on queries use no rollup of a unit before the cutoff.
  if (auto raised = exec(*conn, kSqlRaiseFloor, "raise the rollup floor", {toText(cutoffUs)},
                         PGRES_COMMAND_OK);
      !raised) {
    return raised.error();
  }
  std::int64_t total = 0;
  if (partitioned_) {
    auto dropped = dropExpiredPartitions(*conn, cutoffUs);
    if (!dropped) {
      return dropped.error();
    }
    total += *dropped;
  }
  // What is left before the cutoff lies in the boundary partition (or anywhere, without
  // partitions): deleted device by device. This also fixes first_seen after dropped partitions.
  auto devices = devicesBefore(*conn, cutoffUs);
  if (!devices) {
    return devices.error();
  }
  const std::string cutoff = toText(cutoffUs);
  const std::string chunk = toText(kRetentionChunk);
  // Rollups of whole units before the cutoff go with their messages (the unit holding the
  // cutoff stays, below the floor, until the next run).
  const std::string minuteCutoff = toText(rollup::floorTo(cutoffUs, rollup::kMinuteUs));
  const std::string hourCutoff = toText(rollup::floorTo(cutoffUs, rollup::kHourUs));
  if (auto cleared = exec(*conn, kSqlDeleteOldDirty, "delete old dirty minutes", {minuteCutoff},
                          PGRES_COMMAND_OK);
      !cleared) {
    return cleared.error();
  }
  for (const std::string& device : *devices) {
    for (const auto& [sql, before] : {std::pair{kSqlDeleteOldMinutes, &minuteCutoff},
                                      std::pair{kSqlDeleteOldHours, &hourCutoff}}) {
      if (auto del = exec(*conn, sql, "delete old rollups", {device, *before}, PGRES_COMMAND_OK);
          !del) {
        return del.error();
      }
    }
    while (true) {
      if (auto status = command(*conn, "BEGIN", "begin retention"); !status) {
        return core::Error{status.message()};
      }
      auto deleted = exec(*conn, kSqlDeleteChunk, "delete old messages", {device, cutoff, chunk});
      if (!deleted) {
        rollback(*conn);
        return deleted.error();
      }
      const std::int64_t n = cellInt64(deleted->get(), 0, 0);
      auto updated = exec(*conn, kSqlAfterDelete, "update device after retention",
                          {device, toText(n)}, PGRES_COMMAND_OK);
      if (!updated) {
        rollback(*conn);
        return updated.error();
      }
      if (auto status = command(*conn, "COMMIT", "commit retention"); !status) {
        return core::Error{status.message()};
      }
      total += n;
      if (n < kRetentionChunk) {
        break;
      }
    }
  }
  return total;
}

core::Result<std::int64_t> PostgresStore::dropKeyBefore(const std::string& key,
                                                        std::int64_t cutoffUs) {
  std::string scratch;
  const std::string storedKey(validText(key, scratch));  // as keys are stored
  std::string progressKey = "key:";
  progressKey += storedKey;
  std::lock_guard lock(maintenanceMutex_);
  auto conn = maintenanceLocked();
  if (!conn) {
    return conn.error();
  }
  // Rows before the previous run's cutoff were already done.
  std::int64_t from = std::numeric_limits<std::int64_t>::min();
  auto progress = exec(*conn, kSqlGetProgress, "read per-key retention progress", {progressKey});
  if (!progress) {
    return progress.error();
  }
  if (PQntuples(progress->get()) > 0) {
    from = cellInt64(progress->get(), 0, 0);
  }
  if (from >= cutoffUs) {
    return std::int64_t{0};
  }
  if (auto raised = exec(*conn, kSqlRaiseKeyFloor, "raise the rollup floor of a key",
                         {storedKey, toText(cutoffUs)}, PGRES_COMMAND_OK);
      !raised) {
    return raised.error();
  }
  auto devices = devicesBefore(*conn, cutoffUs);
  if (!devices) {
    return devices.error();
  }
  const std::vector<std::string> base{toText(cutoffUs), storedKey, toText(from),
                                      toText(kRetentionChunk)};
  const std::string minuteCutoff = toText(rollup::floorTo(cutoffUs, rollup::kMinuteUs));
  const std::string hourCutoff = toText(rollup::floorTo(cutoffUs, rollup::kHourUs));
  std::int64_t total = 0;
  for (const std::string& device : *devices) {
    for (const auto& [sql, before] : {std::pair{kSqlDeleteOldKeyMinutes, &minuteCutoff},
                                      std::pair{kSqlDeleteOldKeyHours, &hourCutoff}}) {
      if (auto del = exec(*conn, sql, "delete old rollups of a key", {device, *before, storedKey},
                          PGRES_COMMAND_OK);
          !del) {
        return del.error();
      }
    }
    const std::vector<std::string> params{device, base[0], base[1], base[2], base[3]};
    while (true) {
      // One statement, so one short transaction per chunk.
      auto changed = exec(*conn, kSqlDropKeyChunk, "drop an expired key", params, PGRES_COMMAND_OK);
      if (!changed) {
        return changed.error();
      }
      std::int64_t n = 0;
      const char* tuples = PQcmdTuples(changed->get());
      std::from_chars(tuples, tuples + std::strlen(tuples), n);
      total += n;
      if (n < kRetentionChunk) {
        break;
      }
    }
  }
  auto saved = exec(*conn, kSqlSetProgress, "record per-key retention progress",
                    {progressKey, toText(cutoffUs)}, PGRES_COMMAND_OK);
  if (!saved) {
    return saved.error();
  }
  return total;
}

// --- device tags and attributes ----------------------------------------------------------------

core::Result<DeviceSummary> PostgresStore::updateDevice(const std::string& deviceId,
                                                        const DeviceUpdate& update) {
  std::string scratch;
  const std::string id(validText(deviceId, scratch));  // as ingest stores it
  std::string tagsJson;
  if (update.tags) {
    bool first = true;
    for (const auto& [key, value] : *update.tags) {
      std::string keyScratch;
      appendJsonMember(tagsJson, first, validText(key, keyScratch), FieldValue(value));
    }
    tagsJson += first ? "{}" : "}";
  }
  // Idempotent, so ReaderPool may repeat it on a fresh connection.
  auto written = readers_.run<bool>([&](PGconn* conn) -> core::Result<bool> {
    if (update.attributes) {
      auto type = exec(conn, kSqlCheckObject, "check device attributes", {*update.attributes});
      if (!type) {
        return core::Error{"postgres: device attributes are not valid JSON"};
      }
      if (cell(type->get(), 0, 0) != "object") {
        return core::Error{"postgres: device attributes must be a JSON object"};
      }
    }
    if (auto status = command(conn, "BEGIN", "begin device update"); !status) {
      return core::Error{status.message()};
    }
    std::vector<std::pair<const char*, std::vector<std::string>>> steps;
    steps.push_back(
        {kSqlRegisterDevice, {id, toText(kNeverSeenFirstUs), toText(kNeverSeenLastUs)}});
    if (update.attributes) {
      steps.push_back({kSqlSetAttributes, {id, *update.attributes}});
    }
    if (update.name) {
      std::string nameScratch;
      steps.push_back({kSqlSetName, {id, std::string(validText(*update.name, nameScratch))}});
    }
    if (update.type) {
      std::string typeScratch;
      steps.push_back({kSqlSetType, {id, std::string(validText(*update.type, typeScratch))}});
    }
    if (update.tags) {
      steps.push_back({kSqlClearTags, {id}});
      steps.push_back({kSqlInsertTags, {id, tagsJson}});
    }
    for (const auto& [sql, params] : steps) {
      auto result = exec(conn, sql, "update device", params, PGRES_COMMAND_OK);
      if (!result) {
        rollback(conn);
        return result.error();
      }
    }
    if (auto status = command(conn, "COMMIT", "commit device update"); !status) {
      return core::Error{status.message()};
    }
    return true;
  });
  if (!written) {
    return written.error();
  }
  auto device = getDevice(id);
  if (!device) {
    return device.error();
  }
  if (!device->has_value()) {
    return core::Error{"postgres: device " + id + " vanished after its update"};
  }
  return std::move(**device);
}

core::Result<bool> PostgresStore::deleteDevice(const std::string& deviceId) {
  std::string scratch;
  const std::string id(validText(deviceId, scratch));  // as ingest stores it
  auto exists = readers_.run<bool>([&](PGconn* conn) -> core::Result<bool> {
    auto result = exec(conn, kSqlDeviceExists, "find device to delete", {id});
    if (!result) {
      return result.error();
    }
    return PQntuples(result->get()) > 0;
  });
  if (!exists || !*exists) {
    return exists;
  }
  // 1. The history, a chunk per statement (each its own transaction, repeatable on a fresh
  //    connection), while the device row stays: the writer is never held up by more than one.
  const std::string chunk = toText(kRetentionChunk);
  for (const char* sql : {kSqlDeleteDeviceChunk, kSqlDeleteDeviceMinutes, kSqlDeleteDeviceHours}) {
    std::int64_t deleted = kRetentionChunk;
    // Bounded by the rows there are: a chunk that deletes fewer than a full chunk ends it.
    while (deleted >= kRetentionChunk) {
      auto n = readers_.run<std::int64_t>([&](PGconn* conn) -> core::Result<std::int64_t> {
        auto result = exec(conn, sql, "delete a device's history", {id, chunk});
        if (!result) {
          return result.error();
        }
        return cellInt64(result->get(), 0, 0);
      });
      if (!n) {
        return n.error();
      }
      deleted = *n;
    }
  }
  // 2. The row, what arrived meanwhile, tags and rollups at once. Locking the row first makes a
  //    batch in flight commit before the rest is deleted (then it goes too) or wait until this
  //    commits (then it registers the device anew).
  auto done = readers_.run<bool>([&](PGconn* conn) -> core::Result<bool> {
    if (auto status = command(conn, "BEGIN", "begin device delete"); !status) {
      return core::Error{status.message()};
    }
    if (auto locked = exec(conn, kSqlDeleteDeviceLock, "lock rollups for a device delete");
        !locked) {
      rollback(conn);
      return locked.error();
    }
    for (const char* sql : kSqlDeleteDeviceRest) {
      if (auto result = exec(conn, sql, "delete device", {id}, PGRES_COMMAND_OK); !result) {
        rollback(conn);
        return result.error();
      }
    }
    if (auto status = command(conn, "COMMIT", "commit device delete"); !status) {
      return core::Error{status.message()};
    }
    return true;
  });
  if (!done) {
    return done.error();
  }
  return true;
}

// --- fleet queries -----------------------------------------------------------------------------
// Composed from fragments and run as one statement each, with the group's devices as `d`.

// Collects parameters and hands out their $n placeholders.
class Params {
 public:
  std::string add(std::string value) {
    values_.push_back(std::move(value));
    return "$" + std::to_string(values_.size());
  }
  const std::vector<std::string>& values() const { return values_; }

 private:
  std::vector<std::string> values_;
};

struct GroupSql {
  std::string source;
  std::string condition;  // ends in "AND " when not empty
};

GroupSql groupSql(const DeviceGroup& group, Params& params) {
  if (group.everyDevice()) {
    return {"devices d", ""};
  }
  std::string keyScratch;
  std::string valueScratch;
  GroupSql out;
  out.source = "device_tags g JOIN devices d ON d.device_id = g.device_id";
  out.condition =
      "g.key = " + params.add(std::string(validText(group.tagKey, keyScratch))) +
      " AND g.value = " + params.add(std::string(validText(group.tagValue, valueScratch))) +
      " AND ";
  return out;
}

std::string storedKey(const std::string& key) {
  std::string scratch;
  return std::string(validText(key, scratch));
}

std::string doubleText(double value) {
  char buffer[64];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  return {buffer, end};
}

// Rows of (device_id, last_seen, value[, count]).
std::vector<FleetDevice> fleetDevices(const PGresult* rows, bool withCount) {
  std::vector<FleetDevice> out;
  out.reserve(static_cast<std::size_t>(PQntuples(rows)));
  for (int row = 0; row < PQntuples(rows); ++row) {
    FleetDevice& device = out.emplace_back();
    device.deviceId = std::string(cell(rows, row, 0));
    device.lastSeenUs = cellInt64(rows, row, 1);
    device.value = cellDouble(rows, row, 2);
    device.count = withCount ? cellInt64(rows, row, 3) : 1;
  }
  return out;
}

core::Result<std::vector<FleetDevice>> fleetRows(ReaderPool& readers, const std::string& sql,
                                                 const Params& params, std::string_view what,
                                                 bool withCount) {
  return readers.run<std::vector<FleetDevice>>(
      [&](PGconn* conn) -> core::Result<std::vector<FleetDevice>> {
        auto result = exec(conn, sql.c_str(), what, params.values());
        if (!result) {
          return result.error();
        }
        return fleetDevices(result->get(), withCount);
      });
}

// fleetLatest reads up to this many keys one by one rather than expanding the object.
constexpr std::size_t kFleetKeysByPath = 8;

core::Result<std::vector<FleetDevice>> PostgresStore::fleetLatest(const FleetLatestQuery& query) {
  Params params;
  const GroupSql group = groupSql(query.group, params);
  // Only the requested keys leave the database, their value tokens verbatim.
  std::string values = "d.latest";
  std::vector<std::string> keys;
  for (const std::string& key : query.keys) {
    std::string stored = storedKey(key);
    if (std::find(keys.begin(), keys.end(), stored) == keys.end())
      keys.push_back(std::move(stored));
  }
  if (!keys.empty() && keys.size() <= kFleetKeysByPath) {
    // A few keys (a position): one `->` per key, the object rebuilt as text (missing keys drop
    // out of concat_ws), rather than expanding the whole object with json_each per device.
    values = "'{' || concat_ws(','";
    for (const std::string& key : keys) {
      std::string member;
      appendJsonString(member, key);
      member += ':';
      values += ", " + params.add(std::move(member)) + "::text || (d.latest->" + params.add(key) +
                "::text)::text";
    }
    values += ") || '}'";
  } else if (!keys.empty()) {
    // The keys travel as the member names of one JSON object.
    std::string names;
    bool first = true;
    for (const std::string& key : keys) appendJsonMember(names, first, key, FieldValue(true));
    names += "}";
    values =
        "(SELECT json_object_agg(e.key, e.value) FROM json_each(d.latest) e "
        "WHERE e.key IN (SELECT json_object_keys(" +
        params.add(names) + "::json)))";
  }
  const std::string sql = "SELECT device_id, last_seen, v FROM (SELECT d.device_id, d.last_seen, " +
                          values + " AS v FROM " + group.source + " WHERE " + group.condition +
                          "TRUE) s WHERE v IS NOT NULL AND v::text <> '{}' "
                          "ORDER BY device_id COLLATE \"C\"";
  return readers_.run<std::vector<FleetDevice>>(
      [&](PGconn* conn) -> core::Result<std::vector<FleetDevice>> {
        auto result = exec(conn, sql.c_str(), "fleet latest", params.values());
        if (!result) {
          return result.error();
        }
        const PGresult* rows = result->get();
        std::vector<FleetDevice> out;
        std::vector<Field> latest;
        for (int row = 0; row < PQntuples(rows); ++row) {
          latest.clear();
          if (!parseFields(cell(rows, row, 2), latest)) {
            return core::Error{"postgres: latest values of a device are not valid JSON"};
          }
          FleetDevice device;
          for (Field& field : latest) {
            if (query.keys.empty() ||
                std::find(query.keys.begin(), query.keys.end(), field.key) != query.keys.end()) {
              device.values.push_back(std::move(field));
            }
          }
          if (device.values.empty()) {
            continue;
          }
          device.deviceId = std::string(cell(rows, row, 0));
          device.lastSeenUs = cellInt64(rows, row, 1);
          device.count = static_cast<std::int64_t>(device.values.size());
          out.push_back(std::move(device));
        }
        return out;
      });
}

core::Result<std::vector<FleetDevice>> PostgresStore::fleetThreshold(
    const FleetThresholdQuery& query) {
  Params params;
  const GroupSql group = groupSql(query.group, params);
  const std::string key = params.add(storedKey(query.key));
  // CASE: the cast must never see a string (WHERE gives no evaluation order).
  const std::string value = "CASE WHEN json_typeof(d.latest->" + key +
                            "::text) = 'number' THEN (d.latest->>" + key + "::text)::float8 END";
  const std::string sql = "SELECT d.device_id, d.last_seen, " + value + " FROM " + group.source +
                          " WHERE " + group.condition + value + (query.below ? " < " : " > ") +
                          params.add(doubleText(query.threshold)) +
                          "::float8 ORDER BY d.device_id COLLATE \"C\"";
  return fleetRows(readers_, sql, params, "fleet threshold", false);
}

core::Result<std::vector<FleetDevice>> PostgresStore::fleetWindowAverage(
    const FleetWindowQuery& query) {
  return readers_.run<std::vector<FleetDevice>>([&](PGconn* conn)
                                                    -> core::Result<std::vector<FleetDevice>> {
    // One snapshot for the rollup state, the rollups and the raw rows.
    if (auto status =
            command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin fleet window");
        !status) {
      return core::Error{status.message()};
    }
    struct End {
      PGconn* conn;
      ~End() { rollback(conn); }
    } end{conn};
    // [lo, hi): the whole minutes rollups answer (less the dirty ones).
    std::int64_t lo = 0;
    std::int64_t hi = 0;
    if (query.useRollups) {
      auto state = exec(conn, kSqlRollupQueryState, "read rollup state", {storedKey(query.key)});
      if (!state) {
        return state.error();
      }
      if (PQntuples(state->get()) == 1 && cellInt64(state->get(), 0, 0) != rollup::kNoWatermark) {
        lo = rollup::ceilTo(std::max(query.fromUs, cellInt64(state->get(), 0, 1)),
                            rollup::kMinuteUs);
        hi =
            rollup::floorTo(std::min(query.toUs, cellInt64(state->get(), 0, 0)), rollup::kMinuteUs);
      }
    }
    Params params;
    const GroupSql group = groupSql(query.group, params);
    const std::string key = params.add(storedKey(query.key));
    const std::string from = params.add(toText(query.fromUs)) + "::int8";
    const std::string to = params.add(toText(query.toUs)) + "::int8";
    const std::string threshold = params.add(doubleText(query.threshold)) + "::float8";
    const std::string number = "json_typeof(m.fields->" + key + "::text) = 'number'";
    const std::string value = "(m.fields->>" + key + "::text)::float8";
    std::string sql;
    if (lo < hi) {
      const std::string l = params.add(toText(lo)) + "::int8";
      const std::string h = params.add(toText(hi)) + "::int8";
      // The select list only sees rows that passed WHERE, so the cast never sees a string.
      sql = "WITH g AS MATERIALIZED (SELECT d.device_id, d.last_seen FROM " + group.source +
            " WHERE " + group.condition +
            "TRUE), x AS MATERIALIZED (SELECT DISTINCT device_id, bucket FROM "
            "tern_rollup_dirty WHERE bucket >= " +
            l + " AND bucket < " + h +
            "), p(device_id, s, n) AS (SELECT r.device_id, r.sum, r.n FROM g JOIN "
            "tern_rollup_1m r ON r.device_id = g.device_id AND r.bucket >= " +
            l + " AND r.bucket < " + h + " AND r.key = " + key +
            " WHERE NOT EXISTS (SELECT 1 FROM x WHERE x.device_id = r.device_id AND x.bucket "
            "= r.bucket) UNION ALL SELECT m.device_id, " +
            value +
            ", 1 FROM g JOIN messages m ON m.device_id = g.device_id AND ((m.ts >= " + from +
            " AND m.ts < " + l + ") OR (m.ts >= " + h + " AND m.ts < " + to + ")) WHERE " + number +
            " UNION ALL SELECT m.device_id, " + value +
            ", 1 FROM g JOIN x ON x.device_id = g.device_id JOIN messages m ON m.device_id = "
            "x.device_id AND m.ts >= x.bucket AND m.ts < x.bucket + 60000000 WHERE " +
            number +
            ") SELECT g.device_id, g.last_seen, sum(p.s) / sum(p.n)::float8, sum(p.n)::int8 "
            "FROM g JOIN p ON p.device_id = g.device_id GROUP BY g.device_id, g.last_seen "
            "HAVING sum(p.s) / sum(p.n)::float8" +
            (query.below ? " < " : " > ") + threshold + " ORDER BY g.device_id COLLATE \"C\"";
    } else {
      // One index range of messages per device; the aggregate only sees numbers (WHERE
      // first).
      sql = "SELECT d.device_id, d.last_seen, s.a, s.n FROM " + group.source +
            " CROSS JOIN LATERAL (SELECT avg(" + value +
            ") AS a, count(*)::int8 AS n FROM messages m WHERE m.device_id = d.device_id AND "
            "m.ts >= " +
            from + " AND m.ts < " + to + " AND " + number + ") s WHERE " + group.condition +
            "s.n > 0 AND s.a" + (query.below ? " < " : " > ") + threshold +
            " ORDER BY d.device_id COLLATE \"C\"";
    }
    auto result = exec(conn, sql.c_str(), "fleet window average", params.values());
    if (!result) {
      return result.error();
    }
    return fleetDevices(result->get(), true);
  });
}

core::Result<std::vector<FleetDailyRow>> PostgresStore::fleetDaily(const FleetDailyQuery& query) {
  Params params;
  const GroupSql group = groupSql(query.group, params);
  const std::string key = params.add(storedKey(query.key));
  const std::string v = "(m.fields->>" + key + "::text)::float8";
  std::string aggregate;
  switch (query.aggregate) {
    case Aggregate::kAvg:
      aggregate = "avg(" + v + ")";
      break;
    case Aggregate::kMin:
      aggregate = "min(" + v + ")";
      break;
    case Aggregate::kMax:
      aggregate = "max(" + v + ")";
      break;
    case Aggregate::kSum:
      aggregate = "sum(" + v + ")";
      break;
    case Aggregate::kCount:
      aggregate = "count(*)";
      break;
    case Aggregate::kFirst:
    case Aggregate::kLast:
      return core::Error{"fleet daily: first and last are not offered"};
  }
  const bool byTag = !query.byTag.empty();
  std::string by;
  if (byTag) {
    by = " LEFT JOIN device_tags b ON b.device_id = d.device_id AND b.key = " +
         params.add(storedKey(query.byTag));
  }
  // Floored, so days before the epoch are whole days too.
  const std::string sql =
      "SELECT m.ts - (((m.ts % 86400000000) + 86400000000) % 86400000000) AS day, " +
      std::string(byTag ? "b.value" : "NULL::text") + " AS grp, " + aggregate +
      "::float8, count(*)::int8 FROM " + group.source + by +
      " JOIN messages m ON m.device_id = d.device_id AND m.ts >= " +
      params.add(toText(query.fromUs)) + "::int8 AND m.ts < " + params.add(toText(query.toUs)) +
      "::int8 WHERE " + group.condition + "json_typeof(m.fields->" + key +
      "::text) = 'number' GROUP BY 1, 2 ORDER BY 1" +
      (byTag ? ", b.value COLLATE \"C\" NULLS LAST" : "");
  return readers_.run<std::vector<FleetDailyRow>>(
      [&](PGconn* conn) -> core::Result<std::vector<FleetDailyRow>> {
        auto result = exec(conn, sql.c_str(), "fleet daily", params.values());
        if (!result) {
          return result.error();
        }
        const PGresult* rows = result->get();
        std::vector<FleetDailyRow> out;
        out.reserve(static_cast<std::size_t>(PQntuples(rows)));
        for (int row = 0; row < PQntuples(rows); ++row) {
          FleetDailyRow& daily = out.emplace_back();
          daily.dayUs = cellInt64(rows, row, 0);
          if (!PQgetisnull(rows, row, 1)) {
            daily.group = std::string(cell(rows, row, 1));
          }
          daily.value = cellDouble(rows, row, 2);
          daily.count = cellInt64(rows, row, 3);
        }
        return out;
      });
}

core::Result<RollupRun> PostgresStore::rollup(std::int64_t untilUs) {
  std::lock_guard lock(maintenanceMutex_);
  auto conn = maintenanceLocked();
  if (!conn) {
    return conn.error();
  }
  // One run at a time across every node on this database.
  if (auto locked = exec(*conn, kSqlRollupLock, "lock rollups"); !locked) {
    return locked.error();
  }
  auto run = rollupLocked(*conn, untilUs);
  rollback(*conn);
  if (auto unlocked = exec(*conn, kSqlRollupUnlock, "unlock rollups"); !unlocked && run) {
    return unlocked.error();
  }
  return run;
}

core::Result<RollupRun> PostgresStore::rollupLocked(PGconn* conn, std::int64_t untilUs) {
  // 1. Announce the target. FOR UPDATE waits for a batch in flight (it holds a share lock on
  //    the row), so every batch that saw the old target is committed before the reads below,
  //    and every later one marks records before the new target dirty.
  std::int64_t watermark = rollup::kNoWatermark;
  std::int64_t target = rollup::floorTo(untilUs, rollup::kMinuteUs);
  if (auto status = command(conn, "BEGIN", "begin rollup"); !status) {
    return core::Error{status.message()};
  }
  auto state = exec(conn, kSqlStateForUpdate, "read rollup state");
  if (!state) {
    return state.error();
  }
  if (PQntuples(state->get()) != 1) {
    return core::Error{"postgres: rollup state is missing"};
  }
  watermark = cellInt64(state->get(), 0, 0);
  const std::int64_t pending = cellInt64(state->get(), 0, 1);
  std::int64_t base = watermark;
  if (base == rollup::kNoWatermark) {
    auto first = exec(conn, kSqlMinFirstSeen, "find the oldest message");
    if (!first) {
      return first.error();
    }
    base = PQgetisnull(first->get(), 0, 0)
               ? target
               : rollup::floorTo(cellInt64(first->get(), 0, 0), rollup::kMinuteUs);
  }
  target = std::max(watermark, std::min(target, base + kRollupMaxSpanUs));
  if (target > pending) {
    if (auto set = exec(conn, kSqlSetPending, "announce the rollup target", {toText(target)},
                        PGRES_COMMAND_OK);
        !set) {
      return set.error();
    }
  }
  if (auto status = command(conn, "COMMIT", "commit rollup target"); !status) {
    return core::Error{status.message()};
  }

  // 2. One snapshot: take the dirty marks, roll up [watermark, target) and the dirty minutes,
  //    then the hours they fall in. Only this job writes these rows, so nothing conflicts.
  RollupRun run;
  if (auto status = command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ", "begin rollup");
      !status) {
    return core::Error{status.message()};
  }
  for (const char* sql : {kSqlDirtyTable, kSqlTouchedTable}) {
    if (auto status = command(conn, sql, "create rollup work tables"); !status) {
      return core::Error{status.message()};
    }
  }
  const std::string from = toText(watermark);
  const std::string to = toText(target);
  if (auto taken = exec(conn, kSqlTakeDirty, "take dirty minutes", {from}, PGRES_COMMAND_OK);
      !taken) {
    return taken.error();
  }
  auto dirty = exec(conn, kSqlCountDirty, "count dirty minutes");
  if (!dirty) {
    return dirty.error();
  }
  run.dirtyMinutes = cellInt64(dirty->get(), 0, 0);
  if (auto rolled = exec(conn, kSqlRollMinutes, "roll up minutes", {from, to}, PGRES_COMMAND_OK);
      !rolled) {
    return rolled.error();
  }
  auto minutes = exec(conn, kSqlCountMinutes, "count minute rollups");
  if (!minutes) {
    return minutes.error();
  }
  run.minutes = cellInt64(minutes->get(), 0, 0);
  if (auto hours = exec(conn, kSqlRollHours, "roll up hours", {to, from}, PGRES_COMMAND_OK);
      !hours) {
    return hours.error();
  }
  if (auto status = command(conn, "COMMIT", "commit rollup"); !status) {
    return core::Error{status.message()};
  }
  // 3. Queries use the rollups up to the new watermark from now on. A crash before this
  //    statement redoes the same range next time.
  if (auto moved =
          exec(conn, kSqlSetWatermark, "move the rollup watermark", {to}, PGRES_COMMAND_OK);
      !moved) {
    return moved.error();
  }
  run.watermarkUs = target;
  return run;
}

core::Result<std::optional<std::vector<Bucket>>> PostgresStore::querySeriesRolledUp(
    const SeriesQuery& query) {
  using Out = std::optional<std::vector<Bucket>>;
  std::string scratch;
  const std::string key(validText(query.key, scratch));
  return readers_.run<Out>([&](PGconn* conn) -> core::Result<Out> {
    // One snapshot for the state, the rollups and the raw rows.
    if (auto status =
            command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin series");
        !status) {
      return core::Error{status.message()};
    }
    struct End {
      PGconn* conn;
      ~End() { rollback(conn); }
    } end{conn};
    auto stateRow = exec(conn, kSqlRollupQueryState, "read rollup state", {key});
    if (!stateRow) {
      return stateRow.error();
    }
    if (PQntuples(stateRow->get()) != 1) {
      return Out();
    }
    rollup::State state;
    state.watermarkUs = cellInt64(stateRow->get(), 0, 0);
    state.floorUs = cellInt64(stateRow->get(), 0, 1);
    if (state.watermarkUs == rollup::kNoWatermark) {
      return Out();
    }
    auto dirty = exec(conn, kSqlDirtyInRange, "read dirty minutes",
                      {query.deviceId, toText(rollup::floorTo(query.fromUs, rollup::kHourUs)),
                       toText(query.toUs)});
    if (!dirty) {
      return dirty.error();
    }
    for (int row = 0; row < PQntuples(dirty->get()); ++row) {
      state.dirtyMinutes.push_back(cellInt64(dirty->get(), row, 0));
    }
    rollup::Source source;
    source.rolled = [&](bool hours, std::int64_t from,
                        std::int64_t to) -> core::Result<std::vector<rollup::TimedPartial>> {
      auto rows = exec(conn, hours ? kSqlRolledHours : kSqlRolledMinutes, "read rollups",
                       {query.deviceId, toText(from), toText(to), key});
      if (!rows) {
        return rows.error();
      }
      std::vector<rollup::TimedPartial> out;
      const PGresult* r = rows->get();
      for (int row = 0; row < PQntuples(r); ++row) {
        rollup::Partial p;
        p.count = cellInt64(r, row, 1);
        p.sum = cellDouble(r, row, 2);
        p.min = cellDouble(r, row, 3);
        p.max = cellDouble(r, row, 4);
        p.firstTs = cellInt64(r, row, 5);
        p.first = cellDouble(r, row, 6);
        p.lastTs = cellInt64(r, row, 7);
        p.last = cellDouble(r, row, 8);
        out.emplace_back(cellInt64(r, row, 0), p);
      }
      return out;
    };
    source.raw = [&](std::int64_t from,
                     std::int64_t to) -> core::Result<std::vector<rollup::RawValue>> {
      auto rows = exec(conn, kSqlRawValues, "query series",
                       {query.deviceId, toText(from), toText(to), key});
      if (!rows) {
        return rows.error();
      }
      std::vector<rollup::RawValue> out;
      const PGresult* r = rows->get();
      out.reserve(static_cast<std::size_t>(PQntuples(r)));
      for (int row = 0; row < PQntuples(r); ++row) {
        out.push_back(
            rollup::RawValue{cellInt64(r, row, 0), cellInt64(r, row, 1), cellDouble(r, row, 2)});
      }
      return out;
    };
    return rollup::query(query, state, source);
  });
}

core::Result<std::string> PostgresStore::layout() {
  return readers_.run<std::string>([&](PGconn* conn) -> core::Result<std::string> {
    auto result = exec(conn, kSqlLayout, "read layout");
    if (!result) {
      return result.error();
    }
    if (PQntuples(result->get()) == 0) {
      return core::Error{"postgres: no messages table"};
    }
    return std::string(cell(result->get(), 0, 0));
  });
}

}  // namespace

std::unique_ptr<Store> openPostgresStore(const PostgresOptions& options) {
  return std::make_unique<PostgresStore>(options);
}

int postgresSchemaVersion() {
  return kSchemaVersion;
}

core::Result<std::string> messagesLayout(Store& store) {
  auto* postgresStore = dynamic_cast<PostgresStore*>(&store);
  if (postgresStore == nullptr) {
    return core::Error{"not a PostgreSQL store"};
  }
  return postgresStore->layout();
}

}  // namespace tern::storage::postgres
