// The embedded SQLite backend: one database file in WAL mode, one writer connection used only
// by the writer thread, and a small pool of read connections for everything else.
#include "storage/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "storage/rollup.h"

namespace tern::storage::sqlite {
namespace {

constexpr int kSchemaVersion = 6;
constexpr std::int64_t kFlagPayloadJson = 1;  // messages.flags bit 0
constexpr int kBusyTimeoutMs = 5000;
constexpr std::size_t kMaxIdleReaders = 8;
constexpr std::int64_t kReaderCacheKiB = 16 * 1024;

struct Migration {
  int version;
  const char* sql;
};

// Applied in order, all pending ones in one transaction. Never edit a released entry: append a
// new one and bump kSchemaVersion.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE devices(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL UNIQUE,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  message_count INTEGER NOT NULL DEFAULT 0,
  latest TEXT NOT NULL DEFAULT '{}'
);
-- A rowid table: appends go to the end of the b-tree, which is what keeps ingest fast.
CREATE TABLE messages(
  id INTEGER PRIMARY KEY,
  device INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  device_ts INTEGER,
  node TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  flags INTEGER NOT NULL,
  fields TEXT
);
-- The implicit trailing rowid makes this (device, ts, id): keyset pages need no sort.
CREATE INDEX messages_device_ts ON messages(device, ts);
)sql"},
    // Device tags (for fleet queries over a group) and attributes, set through the API.
    {2, R"sql(
ALTER TABLE devices ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
CREATE TABLE device_tags(
  device INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(device, key)
) WITHOUT ROWID;
-- A group (key = value) is one range of this index, already in device order.
CREATE INDEX device_tags_key_value ON device_tags(key, value, device);
)sql"},
    // Rollups (storage/rollup.h): per device, minute (hour) and key, the numeric values' count,
    // sum, min, max, first and last. Keyed by (device, bucket, key) so that retention and a
    // dirty minute are key ranges; a query reads all keys of its range and keeps one.
    {3, R"sql(
CREATE TABLE rollup_1m(
  device INTEGER NOT NULL, bucket INTEGER NOT NULL, key TEXT NOT NULL,
  n INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
  first_ts INTEGER NOT NULL, first REAL NOT NULL, last_ts INTEGER NOT NULL, last REAL NOT NULL,
  PRIMARY KEY(device, bucket, key)) WITHOUT ROWID;
CREATE TABLE rollup_1h(
  device INTEGER NOT NULL, bucket INTEGER NOT NULL, key TEXT NOT NULL,
  n INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
  first_ts INTEGER NOT NULL, first REAL NOT NULL, last_ts INTEGER NOT NULL, last REAL NOT NULL,
  PRIMARY KEY(device, bucket, key)) WITHOUT ROWID;
-- Minutes before the rollup watermark that got a record after they were rolled up.
CREATE TABLE rollup_dirty(device INTEGER NOT NULL, bucket INTEGER NOT NULL,
  PRIMARY KEY(device, bucket)) WITHOUT ROWID;
)sql"},
    // A device's display name and type, set through the API.
    {4, R"sql(
ALTER TABLE devices ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN type TEXT NOT NULL DEFAULT '';
)sql"},
    // Devices can be deleted: their row ids must never come back (AUTOINCREMENT), since the
    // writer caches them and messages, tags and rollups refer to them. SQLite cannot add
    // AUTOINCREMENT to a table, so it is rebuilt (ids kept).
    {5, R"sql(
CREATE TABLE devices_v5(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL UNIQUE,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  message_count INTEGER NOT NULL DEFAULT 0,
  latest TEXT NOT NULL DEFAULT '{}',
  attributes TEXT NOT NULL DEFAULT '{}',
  name TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL DEFAULT ''
);
INSERT INTO devices_v5(id, device_id, first_seen, last_seen, message_count, latest, attributes,
  name, type)
  SELECT id, device_id, first_seen, last_seen, message_count, latest, attributes, name, type
  FROM devices;
DROP TABLE devices;
ALTER TABLE devices_v5 RENAME TO devices;
)sql"},
    // Messages are indexed by (chunk, device, ts), a chunk being 2^16 consecutive row ids (a
    // virtual column: no bytes stored). A batch's index entries then land in the newest chunk's
    // small subtree, a few hundred pages that stay cached and are written once per commit,
    // however large the table grows; under (device, ts) every commit rewrote about one index page
    // per record once the index was large, so the write rate fell as the table grew. The price
    // is one index seek per chunk that a device's time range spans; message_chunks holds each
    // chunk's time span (a superset: deletes do not narrow it) so queries visit only those.
    {6, R"sql(
ALTER TABLE messages ADD COLUMN chunk INTEGER AS (id >> 16) VIRTUAL;
CREATE TABLE message_chunks(chunk INTEGER PRIMARY KEY, min_ts INTEGER NOT NULL,
  max_ts INTEGER NOT NULL);
INSERT INTO message_chunks(chunk, min_ts, max_ts)
  SELECT id >> 16, min(ts), max(ts) FROM messages GROUP BY id >> 16;
CREATE INDEX messages_chunk_device_ts ON messages(chunk, device, ts);
DROP INDEX messages_device_ts;
)sql"},
};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

// --- SQL ---------------------------------------------------------------------------------------

constexpr const char* kSqlBegin = "BEGIN IMMEDIATE";
constexpr const char* kSqlCommit = "COMMIT";
constexpr const char* kSqlRollback = "ROLLBACK";
constexpr const char* kSqlInsertMessage =
    "INSERT INTO messages(device, ts, device_ts, node, topic, payload, flags, fields) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
// The latest values are a flat JSON object, so an RFC 7396 merge patch is exactly "newer keys
// win"; json_patch keeps number tokens verbatim, so int/double types survive.
// A device whose messages retention removed (count 0) starts its first-seen time afresh; a
// min() would keep the expired time.
constexpr const char* kSqlUpdateDevice =
    "UPDATE devices SET first_seen = CASE WHEN message_count = 0 THEN ?2 "
    "ELSE min(first_seen, ?2) END, last_seen = max(last_seen, ?3), "
    "message_count = message_count + ?4, latest = json_patch(latest, ?5) WHERE id = ?1";
constexpr const char* kSqlUpsertDevice =
    "INSERT INTO devices(device_id, first_seen, last_seen, message_count, latest) "
    "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(device_id) DO UPDATE SET "
    "first_seen = CASE WHEN message_count = 0 THEN excluded.first_seen "
    "ELSE min(first_seen, excluded.first_seen) END, "
    "last_seen = max(last_seen, excluded.last_seen), "
    "message_count = message_count + excluded.message_count, "
    "latest = json_patch(latest, excluded.latest) RETURNING id";

constexpr int kChunkShift = 16;  // messages.chunk = id >> 16 (migration 6)
// INDEXED BY: without statistics the planner may otherwise build an automatic index per query.
#define TERN_MESSAGES_BY_CHUNK "messages INDEXED BY messages_chunk_device_ts "
// The chunks that may hold messages with lo <= ts < hi (SQL expressions).
#define TERN_CHUNKS(lo, hi) \
  "(SELECT chunk FROM message_chunks WHERE min_ts < " hi " AND max_ts >= " lo ")"
constexpr const char* kSqlChunksOfRange =
    "SELECT chunk, min_ts, max_ts FROM message_chunks WHERE min_ts < ?2 AND max_ts >= ?1";
constexpr const char* kSqlPutChunk =
    "INSERT INTO message_chunks(chunk, min_ts, max_ts) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(chunk) DO UPDATE SET min_ts = min(min_ts, excluded.min_ts), "
    "max_ts = max(max_ts, excluded.max_ts)";
#define TERN_MESSAGE_COLUMNS "SELECT id, ts, device_ts, node, topic, payload, flags, fields "
#define TERN_MESSAGE_RANGE \
  "FROM " TERN_MESSAGES_BY_CHUNK "WHERE chunk = ?7 AND device = ?1 AND ts >= ?2 AND ts < ?3 "
// One chunk's part of a page, in index order. Separate statements with and without a cursor,
// so the planner never picks a dummy cursor bound over the real range start.
constexpr const char* kSqlMessagesAsc =
    TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE "ORDER BY ts, id LIMIT ?6";
constexpr const char* kSqlMessagesDesc =
    TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE "ORDER BY ts DESC, id DESC LIMIT ?6";
constexpr const char* kSqlMessagesAscAfter =
    TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE "AND (ts, id) > (?4, ?5) ORDER BY ts, id LIMIT ?6";
constexpr const char* kSqlMessagesDescAfter = TERN_MESSAGE_COLUMNS TERN_MESSAGE_RANGE
    "AND (ts, id) < (?4, ?5) ORDER BY ts DESC, id DESC LIMIT ?6";
#undef TERN_MESSAGE_RANGE
#define TERN_MESSAGE_RANGE \
  "FROM " TERN_MESSAGES_BY_CHUNK "WHERE chunk IN " TERN_CHUNKS(                                  \
      "?2",                                                                                      \
      "?3") " AND device = (SELECT id FROM devices WHERE device_id = ?1) AND ts >= ?2 AND ts < " \
            "?3 "
// Series rows come sorted by (ts, id) (chunks may overlap in time, so SQLite sorts) and are
// bucketed here; first/last rely on that order.
// json_type tells booleans (which json_extract turns into 0/1) from numbers.
constexpr const char* kSqlSeriesByPath =
    "SELECT ts, json_extract(fields, ?4) " TERN_MESSAGE_RANGE
    "AND json_type(fields, ?4) IN ('integer', 'real') ORDER BY ts, id";
// SQLite's JSON paths cannot quote a '"', so such keys are matched through json_each instead.
constexpr const char* kSqlSeriesByKey =
    "SELECT m.ts, j.value FROM messages AS m INDEXED BY messages_chunk_device_ts, "
    "json_each(m.fields) AS j WHERE m.chunk IN " TERN_CHUNKS("?2", "?3")
    " AND m.device = (SELECT id FROM devices WHERE device_id = ?1) "
    "AND m.ts >= ?2 AND m.ts < ?3 AND j.key = ?4 AND j.type IN ('integer', 'real') "
    "ORDER BY m.ts, m.id";
#undef TERN_MESSAGE_COLUMNS
#undef TERN_MESSAGE_RANGE
// json_group_object over no rows is '{}'.
#define TERN_DEVICE_COLUMNS                                                        \
  "SELECT d.device_id, d.first_seen, d.last_seen, d.message_count, d.latest, "     \
  "d.attributes, (SELECT json_group_object(t.key, t.value) FROM device_tags AS t " \
  "WHERE t.device = d.id), d.name, d.type "
constexpr const char* kSqlListDevices =
    TERN_DEVICE_COLUMNS "FROM devices AS d ORDER BY d.device_id";
constexpr const char* kSqlGetDevice =
    TERN_DEVICE_COLUMNS "FROM devices AS d WHERE d.device_id = ?1";
constexpr const char* kSqlDevicesWithTag = TERN_DEVICE_COLUMNS
    "FROM device_tags AS g CROSS JOIN devices AS d ON d.id = g.device "
    "WHERE g.key = ?1 AND g.value = ?2 ORDER BY d.device_id";
#undef TERN_DEVICE_COLUMNS
// Device updates (API writes): a device that does not exist yet is registered with no messages.
constexpr const char* kSqlCheckObject = "SELECT json_type(?1)";
constexpr const char* kSqlRegisterDevice =
    "INSERT INTO devices(device_id, first_seen, last_seen, message_count, latest) "
    "VALUES(?1, ?2, ?3, 0, '{}') ON CONFLICT(device_id) DO UPDATE SET device_id = device_id "
    "RETURNING id";
constexpr const char* kSqlSetAttributes = "UPDATE devices SET attributes = json(?2) WHERE id = ?1";
constexpr const char* kSqlSetName = "UPDATE devices SET name = ?2 WHERE id = ?1";
constexpr const char* kSqlSetType = "UPDATE devices SET type = ?2 WHERE id = ?1";
constexpr const char* kSqlClearTags = "DELETE FROM device_tags WHERE device = ?1";
constexpr const char* kSqlInsertTag =
    "INSERT INTO device_tags(device, key, value) VALUES(?1, ?2, ?3)";
// Every message bumps its device's count in the same transaction, so this is exact and avoids
// a count(*) scan over 100M rows.
constexpr const char* kSqlCountMessages = "SELECT coalesce(sum(message_count), 0) FROM devices";
constexpr const char* kSqlCheck = "SELECT 1";
// Retention works through row id ranges of the chunks that hold expired messages, a slice of
// kRetentionChunk ids per short write transaction, so the ingest writer waits at most one
// slice for the lock.
constexpr std::int64_t kRetentionChunk = 5000;
constexpr const char* kSqlDeviceRowIds = "SELECT id FROM devices ORDER BY id";
constexpr const char* kSqlChunksBefore =
    "SELECT chunk FROM message_chunks WHERE min_ts < ?1 ORDER BY chunk";
constexpr const char* kSqlDeleteSlice =
    "DELETE FROM messages WHERE id >= ?1 AND id < ?2 AND ts < ?3 RETURNING device";
constexpr const char* kSqlCountDown =
    "UPDATE devices SET message_count = message_count - ?2 WHERE id = ?1";
constexpr const char* kSqlChunksByStart =
    "SELECT chunk, min_ts FROM message_chunks ORDER BY min_ts";
constexpr const char* kSqlFirstInChunk =
    "SELECT min(ts) FROM " TERN_MESSAGES_BY_CHUNK "WHERE chunk = ?1 AND device = ?2";
constexpr const char* kSqlSetFirstSeen = "UPDATE devices SET first_seen = ?2 WHERE id = ?1";
// A chunk's directory row goes once the chunk is empty (checked, since a late record may have
// joined it).
constexpr const char* kSqlDropEmptyChunks =
    "DELETE FROM message_chunks WHERE max_ts < ?1 AND NOT EXISTS (SELECT 1 "
    "FROM " TERN_MESSAGES_BY_CHUNK "WHERE chunk = message_chunks.chunk)";
constexpr const char* kSqlDropKeySlice =
    "UPDATE messages SET fields = json_remove(fields, ?3) WHERE id >= ?1 AND id < ?2 "
    "AND ts >= ?4 AND ts < ?5 AND json_type(fields, ?3) IS NOT NULL RETURNING device";
constexpr const char* kSqlChunksOfKeyRange =
    "SELECT chunk FROM message_chunks WHERE min_ts < ?2 AND max_ts >= ?1 ORDER BY chunk";
// Deleting a device: its history in chunks (each its own short write transaction, the count
// following), then what is left and the device row in one last transaction.
constexpr const char* kSqlDeleteDeviceChunk =
    "DELETE FROM messages WHERE id IN (SELECT id FROM " TERN_MESSAGES_BY_CHUNK
    "WHERE chunk IN (SELECT chunk FROM message_chunks) AND device = ?1 LIMIT ?2)";
constexpr const char* kSqlDeleteDeviceCount =
    "UPDATE devices SET message_count = message_count - ?2 WHERE id = ?1";
constexpr const char* kSqlDeleteDeviceMinutes =
    "DELETE FROM rollup_1m WHERE (device, bucket, key) IN "
    "(SELECT device, bucket, key FROM rollup_1m WHERE device = ?1 LIMIT ?2)";
constexpr const char* kSqlDeleteDeviceHours =
    "DELETE FROM rollup_1h WHERE (device, bucket, key) IN "
    "(SELECT device, bucket, key FROM rollup_1h WHERE device = ?1 LIMIT ?2)";
constexpr const char* kSqlDeleteDeviceDirty =
    "DELETE FROM rollup_dirty WHERE (device, bucket) IN "
    "(SELECT device, bucket FROM rollup_dirty WHERE device = ?1 LIMIT ?2)";
constexpr const char* kSqlDeleteDeviceMessagesRest =
    "DELETE FROM messages WHERE id IN (SELECT id FROM " TERN_MESSAGES_BY_CHUNK
    "WHERE chunk IN (SELECT chunk FROM message_chunks) AND device = ?1)";
constexpr const char* kSqlDeleteDeviceMinutesRest = "DELETE FROM rollup_1m WHERE device = ?1";
constexpr const char* kSqlDeleteDeviceHoursRest = "DELETE FROM rollup_1h WHERE device = ?1";
constexpr const char* kSqlDeleteDeviceDirtyRest = "DELETE FROM rollup_dirty WHERE device = ?1";
constexpr const char* kSqlDeleteDeviceTags = "DELETE FROM device_tags WHERE device = ?1";
constexpr const char* kSqlDeleteDeviceRow = "DELETE FROM devices WHERE id = ?1";
// Per-key retention remembers how far it got, so each run reads only rows it has not seen.
constexpr const char* kSqlGetMeta = "SELECT value FROM meta WHERE key = ?1";
constexpr const char* kSqlSetMeta =
    "INSERT INTO meta(key, value) VALUES(?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
// Rollups. State in meta: rollup_watermark (whole minutes before it are rolled up),
// rollup_pending (the writer marks records before it dirty), rollup_floor and
// rollup_floor:<key> (retention: rollups of units before it are not used).
constexpr const char* kMetaWatermark = "rollup_watermark";
constexpr const char* kMetaPending = "rollup_pending";
constexpr const char* kMetaFloor = "rollup_floor";
constexpr const char* kSqlMarkDirty =
    "INSERT OR IGNORE INTO rollup_dirty(device, bucket) VALUES(?1, ?2)";
constexpr const char* kSqlRollupRows =
    "SELECT m.ts, m.id, j.key, j.value FROM messages AS m INDEXED BY messages_chunk_device_ts, "
    "json_each(m.fields) AS j WHERE m.chunk IN " TERN_CHUNKS(
        "?2",
        "?3") " AND m.device = ?1 AND m.ts >= ?2 AND m.ts < ?3 AND j.type IN ('integer', 'real')";
constexpr const char* kSqlDirtyOfDevice = "SELECT bucket FROM rollup_dirty WHERE device = ?1";
constexpr const char* kSqlClearDirty = "DELETE FROM rollup_dirty WHERE device = ?1";
constexpr const char* kSqlPutMinute =
    "INSERT OR REPLACE INTO rollup_1m(device, bucket, key, n, sum, min, max, first_ts, first, "
    "last_ts, last) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
constexpr const char* kSqlPutHour =
    "INSERT OR REPLACE INTO rollup_1h(device, bucket, key, n, sum, min, max, first_ts, first, "
    "last_ts, last) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
constexpr const char* kSqlMinutesOfRange =
    "SELECT bucket, key, n, sum, min, max, first_ts, first, last_ts, last FROM rollup_1m "
    "WHERE device = ?1 AND bucket >= ?2 AND bucket < ?3";
constexpr const char* kSqlHoursOfRange =
    "SELECT bucket, key, n, sum, min, max, first_ts, first, last_ts, last FROM rollup_1h "
    "WHERE device = ?1 AND bucket >= ?2 AND bucket < ?3";
constexpr const char* kSqlMinFirstSeen =
    "SELECT min(first_seen) FROM devices WHERE message_count > 0";
constexpr const char* kSqlDeviceRowId = "SELECT id FROM devices WHERE device_id = ?1";
constexpr const char* kSqlDirtyInRange =
    "SELECT bucket FROM rollup_dirty WHERE device = ?1 AND bucket >= ?2 AND bucket < ?3";
constexpr const char* kSqlRawValuesByPath =
    "SELECT ts, id, json_extract(fields, ?4) FROM " TERN_MESSAGES_BY_CHUNK
    "WHERE chunk IN " TERN_CHUNKS("?2", "?3") " AND device = ?1 AND ts >= ?2 "
    "AND ts < ?3 AND json_type(fields, ?4) IN ('integer', 'real') ORDER BY ts, id";
constexpr const char* kSqlRawValuesByKey =
    "SELECT m.ts, m.id, j.value FROM messages AS m INDEXED BY messages_chunk_device_ts, "
    "json_each(m.fields) AS j WHERE m.chunk IN " TERN_CHUNKS("?2", "?3")
    " AND m.device = ?1 AND m.ts >= ?2 AND m.ts < ?3 AND j.key = ?4 "
    "AND j.type IN ('integer', 'real') ORDER BY m.ts, m.id";
constexpr const char* kSqlDeleteOldMinutes =
    "DELETE FROM rollup_1m WHERE device = ?1 AND bucket < ?2";
constexpr const char* kSqlDeleteOldHours =
    "DELETE FROM rollup_1h WHERE device = ?1 AND bucket < ?2";
constexpr const char* kSqlDeleteOldDirty =
    "DELETE FROM rollup_dirty WHERE device = ?1 AND bucket < ?2";
constexpr const char* kSqlDeleteOldKeyMinutes =
    "DELETE FROM rollup_1m WHERE device = ?1 AND bucket < ?2 AND key = ?3";
constexpr const char* kSqlDeleteOldKeyHours =
    "DELETE FROM rollup_1h WHERE device = ?1 AND bucket < ?2 AND key = ?3";
constexpr const char* kSqlReadBegin = "BEGIN";
// A rollup transaction ends after this many raw values (or devices), so the writer waits for at
// most one such chunk; one run rolls up at most a day past the watermark (a catch-up over a
// long history takes one run per day of it).
constexpr std::int64_t kRollupChunkValues = 20'000;
constexpr std::size_t kRollupChunkDevices = 64;
constexpr std::int64_t kRollupMaxSpanUs = 86'400'000'000;

// --- helpers -----------------------------------------------------------------------------------

core::Error sqlError(sqlite3* db, std::string_view what) {
  std::string message = "sqlite: ";
  message += what;
  message += ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return core::Error{std::move(message)};
}

// Resets a statement when a scope ends, so a half-read query never pins a WAL snapshot.
class ResetGuard {
 public:
  explicit ResetGuard(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~ResetGuard() { sqlite3_reset(stmt_); }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

void bindText(sqlite3_stmt* stmt, int index, std::string_view text) {
  sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

std::string_view columnText(sqlite3_stmt* stmt, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  if (text == nullptr) {
    return {};
  }
  return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt, column))};
}

std::string columnBlob(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt, column));
  if (data == nullptr || size == 0) {
    return {};
  }
  return {static_cast<const char*>(data), size};
}

// One SQLite connection and the statements prepared on it. Used by one thread at a time.
class Connection {
 public:
  // Returns the error instead of throwing: read connections are also opened on the data plane.
  static core::Result<std::unique_ptr<Connection>> tryOpen(const std::string& path, int flags) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      core::Error error = sqlError(db, "open " + path);
      sqlite3_close_v2(db);
      return error;
    }
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    return std::unique_ptr<Connection>(new Connection(db));
  }

  ~Connection() {
    for (auto& [sql, stmt] : statements_) {
      sqlite3_finalize(stmt);
    }
    for (auto& [sql, stmt] : composed_) {
      sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  // Prepared on first use and kept. Keyed by the address of the SQL constant.
  core::Result<sqlite3_stmt*> statement(const char* sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) {
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return sqlError(db_, "prepare");
    }
    statements_.emplace(sql, stmt);
    return stmt;
  }

  // For SQL composed at run time (fleet queries): prepared on first use and kept, keyed by the
  // text. Callers compose from a fixed set of fragments, so the cache stays small.
  core::Result<sqlite3_stmt*> composedStatement(const std::string& sql) {
    if (auto it = composed_.find(sql); it != composed_.end()) {
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
        SQLITE_OK) {
      return sqlError(db_, "prepare");
    }
    composed_.emplace(sql, stmt);
    return stmt;
  }

  // Runs a statement that returns no rows (or whose rows are ignored).
  core::Status run(const char* sql, std::string_view what) {
    auto stmt = statement(sql);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    int rc = SQLITE_ROW;
    while (rc == SQLITE_ROW) {
      rc = sqlite3_step(*stmt);
    }
    if (rc != SQLITE_DONE) {
      return sqlError(db_, what);
    }
    return {};
  }

  // For start-up only: runs SQL (possibly several statements) and throws on failure.
  void execOrThrow(const std::string& sql, std::string_view what) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = "sqlite: ";
      text += what;
      text += ": ";
      text += message != nullptr ? message : sqlite3_errmsg(db_);
      sqlite3_free(message);
      throw std::runtime_error(text);
    }
  }

  // For start-up only: the first column of the first row as text ("" when there is no row).
  std::string queryTextOrThrow(const std::string& sql, std::string_view what) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sqlError(db_, what).message);
    }
    const int rc = sqlite3_step(stmt);
    std::string value;
    if (rc == SQLITE_ROW) {
      value = std::string(columnText(stmt, 0));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      throw std::runtime_error(sqlError(db_, what).message);
    }
    return value;
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
  std::unordered_map<std::string, sqlite3_stmt*> composed_;
};

std::unique_ptr<Connection> openOrThrow(const std::string& path, int flags) {
  auto conn = Connection::tryOpen(path, flags);
  if (!conn) {
    throw std::runtime_error(conn.error().message);
  }
  return std::move(*conn);
}

// --- fields as JSON ----------------------------------------------------------------------------
// Written here and read back here only: a flat object whose values are JSON numbers (integers
// without '.', doubles always with '.' or an exponent), booleans or strings. Doubles use the
// shortest round-trip form, and are read back with from_chars, so values come back bit-exact.

void appendJsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xF];
        } else {
          out += c;  // UTF-8 passes through unchanged
        }
    }
  }
  out += '"';
}

// False when the value has no JSON form (NaN, infinities); such values are not stored.
bool representable(const FieldValue& value) {
  const auto* d = std::get_if<double>(&value);
  return d == nullptr || std::isfinite(*d);
}

void appendJsonValue(std::string& out, const FieldValue& value) {
  char buffer[64];
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, *i).ptr;
    out.append(buffer, end);
  } else if (const auto* d = std::get_if<double>(&value)) {
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, *d).ptr;
    const std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
    out += text;
    if (text.find_first_of(".eE") == std::string_view::npos) {
      out += ".0";  // keep it a double when read back
    }
  } else if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else {
    appendJsonString(out, std::get<std::string>(value));
  }
}

void appendJsonMember(std::string& out, bool& first, std::string_view key,
                      const FieldValue& value) {
  if (!representable(value)) {
    return;
  }
  out += first ? '{' : ',';
  first = false;
  appendJsonString(out, key);
  out += ':';
  appendJsonValue(out, value);
}

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Reads the flat objects written above (and json_patch's re-rendering of them, which keeps
// tokens verbatim). Standard JSON escapes are accepted; nested values are not expected.
class FlatJsonReader {
 public:
  explicit FlatJsonReader(std::string_view text) : text_(text) {}

  bool read(std::vector<Field>& fields) {
    skipSpace();
    if (!consume('{')) {
      return false;
    }
    skipSpace();
    if (consume('}')) {
      return atEnd();
    }
    while (true) {
      Field field;
      skipSpace();
      if (!readString(field.key)) {
        return false;
      }
      skipSpace();
      if (!consume(':')) {
        return false;
      }
      skipSpace();
      bool isNull = false;
      if (!readValue(field.value, isNull)) {
        return false;
      }
      if (!isNull) {
        fields.push_back(std::move(field));
      }
      skipSpace();
      if (consume('}')) {
        return atEnd();
      }
      if (!consume(',')) {
        return false;
      }
    }
  }

 private:
  bool atEnd() {
    skipSpace();
    return pos_ == text_.size();
  }
  void skipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool consumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  bool readHex4(std::uint32_t& value) {
    if (pos_ + 4 > text_.size()) {
      return false;
    }
    const char* begin = text_.data() + pos_;
    const auto [ptr, ec] = std::from_chars(begin, begin + 4, value, 16);
    if (ec != std::errc() || ptr != begin + 4) {
      return false;
    }
    pos_ += 4;
    return true;
  }

  bool readString(std::string& out) {
    if (!consume('"')) {
      return false;
    }
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') {
        return true;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) {
        return false;
      }
      switch (text_[pos_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!readHex4(cp)) {
            return false;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && text_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            std::uint32_t low = 0;
            if (!readHex4(low)) {
              return false;
            }
            cp = (low >= 0xDC00 && low < 0xE000) ? 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                                                 : 0xFFFD;
          } else if (cp >= 0xD800 && cp < 0xE000) {
            cp = 0xFFFD;  // a lone surrogate has no UTF-8 form
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  bool readValue(FieldValue& value, bool& isNull) {
    if (pos_ >= text_.size()) {
      return false;
    }
    const char c = text_[pos_];
    if (c == '"') {
      std::string text;
      if (!readString(text)) {
        return false;
      }
      value = std::move(text);
      return true;
    }
    if (consumeWord("true")) {
      value = true;
      return true;
    }
    if (consumeWord("false")) {
      value = false;
      return true;
    }
    if (consumeWord("null")) {
      isNull = true;
      return true;
    }
    return readNumber(value);
  }

  bool readNumber(FieldValue& value) {
    const std::size_t start = pos_;
    bool isDouble = false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '.' || c == 'e' || c == 'E') {
        isDouble = true;
      } else if (!(c == '-' || c == '+' || (c >= '0' && c <= '9'))) {
        break;
      }
      ++pos_;
    }
    const char* begin = text_.data() + start;
    const char* end = text_.data() + pos_;
    if (begin == end) {
      return false;
    }
    if (!isDouble) {
      std::int64_t i = 0;
      const auto [ptr, ec] = std::from_chars(begin, end, i);
      if (ec == std::errc() && ptr == end) {
        value = i;
        return true;
      }
      // Out of int64 range: fall through and keep it as a double.
    }
    double d = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, d);
    if (ec != std::errc() || ptr != end) {
      return false;
    }
    value = d;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

bool parseFields(std::string_view text, std::vector<Field>& fields) {
  return FlatJsonReader(text).read(fields);
}

// A device's row id, or nothing when the store does not know the device.
core::Result<std::optional<std::int64_t>> findDeviceRowId(Connection& conn,
                                                          const std::string& deviceId) {
  auto stmt = conn.statement(kSqlDeviceRowId);
  if (!stmt) {
    return stmt.error();
  }
  ResetGuard reset(*stmt);
  bindText(*stmt, 1, deviceId);
  const int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_DONE) {
    return std::optional<std::int64_t>();
  }
  if (rc != SQLITE_ROW) {
    return sqlError(conn.db(), "find device");
  }
  return std::optional<std::int64_t>(sqlite3_column_int64(*stmt, 0));
}

// --- rollup helpers ----------------------------------------------------------------------------

// An integer kept in meta, or `fallback` when the key is absent.
core::Result<std::int64_t> readMetaInt(Connection& conn, std::string_view key,
                                       std::int64_t fallback) {
  auto stmt = conn.statement(kSqlGetMeta);
  if (!stmt) {
    return stmt.error();
  }
  ResetGuard reset(*stmt);
  bindText(*stmt, 1, key);
  const int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_DONE) {
    return fallback;
  }
  if (rc != SQLITE_ROW) {
    return sqlError(conn.db(), "read meta");
  }
  const std::string_view text = columnText(*stmt, 0);
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return core::Error{"sqlite: meta " + std::string(key) + " is not an integer"};
  }
  return value;
}

core::Status writeMetaInt(Connection& conn, std::string_view key, std::int64_t value) {
  auto stmt = conn.statement(kSqlSetMeta);
  if (!stmt) {
    return stmt.error();
  }
  ResetGuard reset(*stmt);
  bindText(*stmt, 1, key);
  const std::string text = std::to_string(value);
  bindText(*stmt, 2, text);
  if (sqlite3_step(*stmt) != SQLITE_DONE) {
    return sqlError(conn.db(), "write meta");
  }
  return {};
}

void bindPartial(sqlite3_stmt* stmt, std::int64_t device, std::int64_t bucket, std::string_view key,
                 const rollup::Partial& p) {
  sqlite3_bind_int64(stmt, 1, device);
  sqlite3_bind_int64(stmt, 2, bucket);
  bindText(stmt, 3, key);
  sqlite3_bind_int64(stmt, 4, p.count);
  sqlite3_bind_double(stmt, 5, p.sum);
  sqlite3_bind_double(stmt, 6, p.min);
  sqlite3_bind_double(stmt, 7, p.max);
  sqlite3_bind_int64(stmt, 8, p.firstTs);
  sqlite3_bind_double(stmt, 9, p.first);
  sqlite3_bind_int64(stmt, 10, p.lastTs);
  sqlite3_bind_double(stmt, 11, p.last);
}

// Columns bucket, key, n, sum, min, max, first_ts, first, last_ts, last from column 0.
rollup::Partial readPartial(sqlite3_stmt* stmt) {
  rollup::Partial p;
  p.count = sqlite3_column_int64(stmt, 2);
  p.sum = sqlite3_column_double(stmt, 3);
  p.min = sqlite3_column_double(stmt, 4);
  p.max = sqlite3_column_double(stmt, 5);
  p.firstTs = sqlite3_column_int64(stmt, 6);
  p.first = sqlite3_column_double(stmt, 7);
  p.lastTs = sqlite3_column_int64(stmt, 8);
  p.last = sqlite3_column_double(stmt, 9);
  return p;
}

// Ends a read transaction on a reader connection when the scope ends.
class ReadTransaction {
 public:
  explicit ReadTransaction(Connection& conn) : conn_(conn) {}
  ~ReadTransaction() {
    if (open_) {
      (void)conn_.run(kSqlCommit, "end read");
    }
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;
  core::Status begin() {
    auto status = conn_.run(kSqlReadBegin, "begin read");
    open_ = status.ok();
    return status;
  }

 private:
  Connection& conn_;
  bool open_ = false;
};

// --- store -------------------------------------------------------------------------------------

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};

// Read connections, handed out one per call and returned afterwards. WAL lets them read
// consistent snapshots while the writer commits.
class ReaderPool {
 public:
  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Connection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (conn_) {
        pool_->release(std::move(conn_));
      }
    }
    Connection& conn() { return *conn_; }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  explicit ReaderPool(std::string path) : path_(std::move(path)) {}

  core::Result<Lease> acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        auto conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn));
      }
    }
    auto conn = openReader();
    if (!conn) {
      return conn.error();
    }
    return Lease(this, std::move(*conn));
  }

 private:
  core::Result<std::unique_ptr<Connection>> openReader() {
    auto conn = Connection::tryOpen(path_, SQLITE_OPEN_READWRITE);
    if (!conn) {
      return conn.error();
    }
    // Read-write open so WAL's shared-memory file is always usable; query_only keeps it a reader.
    const std::string pragmas =
        "PRAGMA query_only = 1; PRAGMA temp_store = MEMORY; "
        "PRAGMA cache_size = -" +
        std::to_string(kReaderCacheKiB) + ";";
    if (sqlite3_exec((*conn)->db(), pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      return sqlError((*conn)->db(), "configure reader");
    }
    return std::move(*conn);
  }

  void release(std::unique_ptr<Connection> conn) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < kMaxIdleReaders) {
      idle_.push_back(std::move(conn));
    }
    // else: closed as `conn` goes out of scope.
  }

  std::string path_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

// One device's share of a batch, so `devices` is written once per device per batch.
struct DeviceBatch {
  std::string_view deviceId;
  std::int64_t firstSeenUs = std::numeric_limits<std::int64_t>::max();
  std::int64_t lastSeenUs = std::numeric_limits<std::int64_t>::min();
  std::int64_t count = 0;
  std::vector<std::pair<std::string_view, const FieldValue*>> latest;  // first-seen key order
  std::unordered_map<std::string_view, std::size_t> latestIndex;
  std::int64_t rowId = 0;
  bool isNew = false;  // not in the id cache before this batch
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const SqliteOptions& options) : readers_(options.path), path_(options.path) {
    if (options.path.empty()) {
      throw std::runtime_error("sqlite: no database path given");
    }
    const std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        throw std::runtime_error("sqlite: cannot create directory " + parent.string() + ": " +
                                 ec.message());
      }
    }
    writer_ = openOrThrow(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    const std::string mode = writer_->queryTextOrThrow("PRAGMA journal_mode = WAL", "set WAL");
    if (mode != "wal") {
      throw std::runtime_error("sqlite: cannot use WAL mode for " + options.path + " (got '" +
                               mode + "')");
    }
    const std::int64_t cacheKiB = std::max<std::int64_t>(options.cacheBytes / 1024, 1024);
    writer_->execOrThrow(std::string("PRAGMA synchronous = ") +
                             (options.syncFull ? "FULL" : "NORMAL") + "; PRAGMA cache_size = -" +
                             std::to_string(cacheKiB) +
                             "; PRAGMA temp_store = MEMORY"
                             // Truncate the WAL after checkpoints so a burst does not leave a
                             // huge file behind.
                             "; PRAGMA journal_size_limit = 67108864",
                         "configure");
    migrate();
    // Fail at open, not on the first query, if readers cannot work.
    auto lease = readers_.acquire();
    if (!lease) {
      throw std::runtime_error(lease.error().message);
    }
  }

  core::Status appendBatch(std::span<const Record> records) override;
  core::Result<std::vector<StoredRecord>> queryMessages(const MessageQuery& query) override;
  core::Result<std::vector<Bucket>> querySeries(const SeriesQuery& query) override;
  core::Result<std::vector<DeviceSummary>> listDevices() override;
  core::Result<std::optional<DeviceSummary>> getDevice(const std::string& deviceId) override;
  core::Result<std::int64_t> countMessages() override;
  std::string backendName() const override { return "sqlite"; }
  core::Status check() override;
  core::Result<std::int64_t> deleteBefore(std::int64_t cutoffUs) override;
  core::Result<std::int64_t> dropKeyBefore(const std::string& key, std::int64_t cutoffUs) override;
  core::Result<DeviceSummary> updateDevice(const std::string& deviceId,
                                           const DeviceUpdate& update) override;
  core::Result<std::vector<DeviceSummary>> listDevicesWithTag(const std::string& key,
                                                              const std::string& value) override;
  core::Result<bool> deleteDevice(const std::string& deviceId) override;
  core::Result<std::vector<FleetDevice>> fleetLatest(const FleetLatestQuery& query) override;
  core::Result<std::vector<FleetDevice>> fleetThreshold(const FleetThresholdQuery& query) override;
  core::Result<std::vector<FleetDevice>> fleetWindowAverage(const FleetWindowQuery& query) override;
  core::Result<std::vector<FleetDailyRow>> fleetDaily(const FleetDailyQuery& query) override;
  core::Result<RollupRun> rollup(std::int64_t untilUs) override;

  core::Result<std::string> explainMessages(bool descending);

 private:
  // The series from rollups where they are complete; nullopt: rollups cover none of it.
  core::Result<std::optional<std::vector<Bucket>>> querySeriesRolledUp(const SeriesQuery& query);
  // Writer: marks (device, minute) of records before the pending watermark dirty.
  core::Status markDirty(std::span<const Record> records,
                         const std::vector<std::size_t>& recordDevice,
                         const std::vector<DeviceBatch>& devices);
  // Rolls up one device's minutes in [fromUs, toUs) and its dirty minutes before fromUs, and the
  // hours they fall in. Returns the raw values read.
  core::Result<std::int64_t> rollupDevice(Connection& conn, std::int64_t device,
                                          std::int64_t fromUs, std::int64_t toUs, RollupRun& run);
  // Raises a rollup floor (meta key) to `cutoffUs` in its own transaction.
  core::Status raiseFloorLocked(Connection& conn, const std::string& metaKey,
                                std::int64_t cutoffUs);
  void migrate();
  core::Status writeDevices(std::vector<DeviceBatch>& devices);
  core::Status upsertDevice(DeviceBatch& device, const std::string& latest);
  core::Status writeMessages(std::span<const Record> records,
                             const std::vector<std::size_t>& recordDevice,
                             const std::vector<DeviceBatch>& devices);
  static core::Result<DeviceSummary> readDevice(sqlite3_stmt* stmt);
  core::Result<std::vector<DeviceSummary>> readDevices(const char* sql, const std::string* key,
                                                       const std::string* value);
  core::Status updateDeviceLocked(Connection& conn, const std::string& deviceId,
                                  const DeviceUpdate& update);
  // The connection for device updates and deletes, opened on first use; call with updateMutex_.
  core::Result<Connection*> updaterLocked();
  // Runs `body` in one write transaction on the updater connection (taking updateMutex_).
  core::Status inUpdateTransaction(const std::function<core::Status(Connection&)>& body);
  // The maintenance connection (retention), opened on first use; call with maintenanceMutex_.
  core::Result<Connection*> maintenanceLocked();
  core::Result<std::vector<std::int64_t>> deviceRowIdsLocked(Connection& conn);
  // Waits (briefly, bounded) while the ingest writer waits to begin: see writerWaiting_.
  void yieldToWriter() const;
  // Runs `body` in one write transaction on the maintenance connection.
  // `what` names the job in errors.
  core::Status inMaintenanceTransaction(Connection& conn, const std::function<core::Status()>& body,
                                        std::string_view what = "retention");
  // The chunks a statement lists (bound ?1 = a, ?2 = b).
  core::Result<std::vector<std::int64_t>> chunksLocked(Connection& conn, const char* sql,
                                                       std::int64_t a, std::int64_t b);
  // Runs `sql` (which binds ?1..?2 to a row id slice and returns each changed row's device) on
  // every slice of kRetentionChunk ids of `chunks`, a transaction each; `after` gets the rows
  // changed per device, in the same transaction. Returns the rows changed.
  core::Result<std::int64_t> slicesLocked(
      Connection& conn, const std::vector<std::int64_t>& chunks, const char* sql,
      const std::function<void(sqlite3_stmt*)>& bind,
      const std::function<core::Status(const std::map<std::int64_t, std::int64_t>&)>& after);
  core::Status deleteOldRollupsLocked(Connection& conn, std::int64_t device, std::int64_t cutoffUs,
                                      const std::string* key);
  core::Status resetFirstSeenLocked(
      Connection& conn, const std::vector<std::pair<std::int64_t, std::int64_t>>& chunksByStart,
      std::int64_t device);

  // Declared first so it is destroyed last: the last connection to close checkpoints the WAL.
  std::unique_ptr<Connection> writer_;
  ReaderPool readers_;
  // Writer thread only: device text id → devices.id, for ids known to be committed.
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>> deviceIds_;
  std::string scratch_;  // writer thread only: reused JSON buffer
  std::string path_;
  std::mutex maintenanceMutex_;
  std::unique_ptr<Connection> maintenance_;
  // Set while the ingest writer waits to begin its transaction. SQLite's busy handler polls
  // with sleeps of up to 100 ms, so a job that commits one short transaction and begins the
  // next at once could keep the writer out for a whole run (seen: 5 s, failing the batch);
  // maintenance jobs wait for this to clear before each of their transactions.
  std::atomic<bool> writerWaiting_{false};
  // Device updates from the API, on their own connection so a long retention run does not hold
  // them up (SQLite still serialises the write transactions themselves).
  std::mutex updateMutex_;
  std::unique_ptr<Connection> updater_;
};

void SqliteStore::migrate() {
  writer_->execOrThrow("BEGIN IMMEDIATE", "begin migration");
  try {
    writer_->execOrThrow(
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "create meta");
    const std::string text = writer_->queryTextOrThrow(
        "SELECT value FROM meta WHERE key = 'schema_version'", "read schema version");
    int version = 0;
    if (!text.empty()) {
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
      if (ec != std::errc() || ptr != text.data() + text.size() || version < 0) {
        throw std::runtime_error("sqlite: bad schema version '" + text + "' in meta");
      }
    }
    if (version > kSchemaVersion) {
      throw std::runtime_error("sqlite: database schema version " + std::to_string(version) +
                               " is newer than this build supports (" +
                               std::to_string(kSchemaVersion) + ")");
    }
    const int from = version;
    const auto started = std::chrono::steady_clock::now();
    if (from > 0 && from < kSchemaVersion) {
      // Some steps rewrite a table or an index (6: one pass over every message), so a large
      // database takes a while: say so before it starts.
      spdlog::info("sqlite: upgrading {} from schema version {} to {}", path_, from,
                   kSchemaVersion);
    }
    for (const Migration& migration : kMigrations) {
      if (migration.version > version) {
        writer_->execOrThrow(migration.sql,
                             "migrate to schema version " + std::to_string(migration.version));
        version = migration.version;
      }
    }
    if (from > 0 && from < kSchemaVersion) {
      spdlog::info("sqlite: schema upgraded to version {} in {} ms", kSchemaVersion,
                   std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - started)
                       .count());
    }
    writer_->execOrThrow("INSERT INTO meta(key, value) VALUES('schema_version', '" +
                             std::to_string(version) +
                             "') ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         "record schema version");
    writer_->execOrThrow("COMMIT", "commit migration");
  } catch (...) {
    sqlite3_exec(writer_->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

core::Status SqliteStore::appendBatch(std::span<const Record> records) {
  if (records.empty()) {
    return {};
  }
  // Aggregate per device first, so each device row is written once per batch.
  std::vector<DeviceBatch> devices;
  std::unordered_map<std::string_view, std::size_t> deviceIndex;
  std::vector<std::size_t> recordDevice;
  recordDevice.reserve(records.size());
  for (const Record& record : records) {
    auto [it, inserted] = deviceIndex.try_emplace(record.deviceId, devices.size());
    if (inserted) {
      devices.emplace_back().deviceId = record.deviceId;
    }
    recordDevice.push_back(it->second);
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
  }

  writerWaiting_.store(true, std::memory_order_relaxed);
  core::Status begun = writer_->run(kSqlBegin, "begin");
  writerWaiting_.store(false, std::memory_order_relaxed);
  if (!begun) {
    return begun;
  }
  core::Status status = writeDevices(devices);
  if (status) {
    status = writeMessages(records, recordDevice, devices);
  }
  if (status) {
    status = markDirty(records, recordDevice, devices);
  }
  if (status) {
    status = writer_->run(kSqlCommit, "commit");
  }
  if (!status) {
    if (sqlite3_get_autocommit(writer_->db()) == 0) {
      (void)writer_->run(kSqlRollback, "rollback");
    }
    return status;
  }
  // Only now are new ids safe to cache: a rolled-back batch would have left stale ones.
  for (const DeviceBatch& device : devices) {
    if (device.isNew) {
      deviceIds_.emplace(std::string(device.deviceId), device.rowId);
    }
  }
  return {};
}

core::Status SqliteStore::writeDevices(std::vector<DeviceBatch>& devices) {
  auto update = writer_->statement(kSqlUpdateDevice);
  if (!update) {
    return update.error();
  }
  for (DeviceBatch& device : devices) {
    scratch_.clear();
    bool first = true;
    for (const auto& [key, value] : device.latest) {
      appendJsonMember(scratch_, first, key, *value);
    }
    scratch_ += first ? "{}" : "}";

    auto cached = deviceIds_.find(device.deviceId);
    if (cached == deviceIds_.end()) {
      device.isNew = true;
      if (auto status = upsertDevice(device, scratch_); !status) {
        return status;
      }
      continue;
    }
    device.rowId = cached->second;
    sqlite3_stmt* stmt = *update;
    ResetGuard reset(stmt);
    sqlite3_bind_int64(stmt, 1, device.rowId);
    sqlite3_bind_int64(stmt, 2, device.firstSeenUs);
    sqlite3_bind_int64(stmt, 3, device.lastSeenUs);
    sqlite3_bind_int64(stmt, 4, device.count);
    bindText(stmt, 5, scratch_);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
      return sqlError(writer_->db(), "update device");
    }
    if (sqlite3_changes(writer_->db()) == 0) {
      // The cached row is gone (changed behind our back): fall back to the upsert.
      deviceIds_.erase(cached);
      device.isNew = true;
      if (auto status = upsertDevice(device, scratch_); !status) {
        return status;
      }
    }
  }
  return {};
}

core::Status SqliteStore::upsertDevice(DeviceBatch& device, const std::string& latest) {
  auto upsert = writer_->statement(kSqlUpsertDevice);
  if (!upsert) {
    return upsert.error();
  }
  sqlite3_stmt* stmt = *upsert;
  ResetGuard reset(stmt);
  bindText(stmt, 1, device.deviceId);
  sqlite3_bind_int64(stmt, 2, device.firstSeenUs);
  sqlite3_bind_int64(stmt, 3, device.lastSeenUs);
  sqlite3_bind_int64(stmt, 4, device.count);
  bindText(stmt, 5, latest);
  if (sqlite3_step(stmt) != SQLITE_ROW) {
    return sqlError(writer_->db(), "upsert device");
  }
  device.rowId = sqlite3_column_int64(stmt, 0);
  if (sqlite3_step(stmt) != SQLITE_DONE) {
    return sqlError(writer_->db(), "upsert device");
  }
  return {};
}

core::Status SqliteStore::writeMessages(std::span<const Record> records,
                                        const std::vector<std::size_t>& recordDevice,
                                        const std::vector<DeviceBatch>& devices) {
  auto insert = writer_->statement(kSqlInsertMessage);
  if (!insert) {
    return insert.error();
  }
  sqlite3_stmt* stmt = *insert;
  // The time span each chunk gained; a batch touches one chunk, or two at a boundary.
  struct ChunkSpan {
    std::int64_t chunk;
    std::int64_t minTs;
    std::int64_t maxTs;
  };
  std::vector<ChunkSpan> spans;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& record = records[i];
    ResetGuard reset(stmt);
    sqlite3_bind_int64(stmt, 1, devices[recordDevice[i]].rowId);
    sqlite3_bind_int64(stmt, 2, record.serverTimeUs);
    if (record.deviceTimeUs) {
      sqlite3_bind_int64(stmt, 3, *record.deviceTimeUs);
    } else {
      sqlite3_bind_null(stmt, 3);
    }
    bindText(stmt, 4, record.nodeId);
    bindText(stmt, 5, record.topic);
    // data() is never null, so an empty payload is stored as an empty blob, not NULL.
    sqlite3_bind_blob64(stmt, 6, record.payload.data(), record.payload.size(), SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 7, record.payloadIsJson ? kFlagPayloadJson : 0);
    // Fields come from a JSON payload or from a decoder (a tracker's binary frame): keep both.
    if (record.payloadIsJson || !record.fields.empty()) {
      scratch_.clear();
      bool first = true;
      for (const Field& field : record.fields) {
        appendJsonMember(scratch_, first, field.key, field.value);
      }
      scratch_ += first ? "{}" : "}";
      bindText(stmt, 8, scratch_);
    } else {
      sqlite3_bind_null(stmt, 8);
    }
    if (sqlite3_step(stmt) != SQLITE_DONE) {
      return sqlError(writer_->db(), "insert message");
    }
    const std::int64_t chunk = sqlite3_last_insert_rowid(writer_->db()) >> kChunkShift;
    const std::int64_t ts = record.serverTimeUs;
    if (spans.empty() || spans.back().chunk != chunk) {
      spans.push_back({chunk, ts, ts});
    } else {
      spans.back().minTs = std::min(spans.back().minTs, ts);
      spans.back().maxTs = std::max(spans.back().maxTs, ts);
    }
  }
  auto put = writer_->statement(kSqlPutChunk);
  if (!put) {
    return put.error();
  }
  for (const ChunkSpan& span : spans) {
    ResetGuard reset(*put);
    sqlite3_bind_int64(*put, 1, span.chunk);
    sqlite3_bind_int64(*put, 2, span.minTs);
    sqlite3_bind_int64(*put, 3, span.maxTs);
    if (sqlite3_step(*put) != SQLITE_DONE) {
      return sqlError(writer_->db(), "record a message chunk");
    }
  }
  return {};
}

core::Result<std::vector<StoredRecord>> SqliteStore::queryMessages(const MessageQuery& query) {
  if (query.afterId && !query.afterTimeUs) {
    return core::Error{"afterId needs afterTimeUs"};
  }
  std::vector<StoredRecord> out;
  if (query.limit == 0 || query.fromUs >= query.toUs) {
    return out;
  }
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  Connection& conn = lease->conn();
  // One snapshot for the chunk list and every chunk's rows.
  ReadTransaction read(conn);
  if (auto begun = read.begin(); !begun) {
    return core::Error{begun.message()};
  }
  auto found = findDeviceRowId(conn, query.deviceId);
  if (!found) {
    return found.error();
  }
  if (!*found) {
    return out;
  }
  const std::int64_t device = **found;
  struct Span {
    std::int64_t chunk;
    std::int64_t minTs;
    std::int64_t maxTs;
  };
  std::vector<Span> chunks;
  {
    auto stmt = conn.statement(kSqlChunksOfRange);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, query.fromUs);
    sqlite3_bind_int64(*stmt, 2, query.toUs);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      chunks.push_back({sqlite3_column_int64(*stmt, 0), sqlite3_column_int64(*stmt, 1),
                        sqlite3_column_int64(*stmt, 2)});
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "query messages");
    }
  }
  // Chunks in the page's direction: a chunk that starts after (ends before) the last row of a
  // full page has nothing for it, and neither has any chunk after it.
  std::sort(chunks.begin(), chunks.end(), [&](const Span& a, const Span& b) {
    return query.descending ? a.maxTs > b.maxTs : a.minTs < b.minTs;
  });

  const bool after = query.afterTimeUs.has_value();
  const char* sql = query.descending ? (after ? kSqlMessagesDescAfter : kSqlMessagesDesc)
                                     : (after ? kSqlMessagesAscAfter : kSqlMessagesAsc);
  auto prepared = conn.statement(sql);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  const auto inOrder = [&](const StoredRecord& a, const StoredRecord& b) {
    const auto ka = std::pair(a.record.serverTimeUs, a.id);
    const auto kb = std::pair(b.record.serverTimeUs, b.id);
    return query.descending ? ka > kb : ka < kb;
  };
  out.reserve(std::min<std::uint32_t>(query.limit, 1000));
  for (const Span& chunk : chunks) {
    if (out.size() >= query.limit) {
      const std::int64_t edge = out[query.limit - 1].record.serverTimeUs;
      if (query.descending ? chunk.maxTs < edge : chunk.minTs > edge) {
        break;
      }
    }
    ResetGuard reset(stmt);
    sqlite3_bind_int64(stmt, 1, device);
    sqlite3_bind_int64(stmt, 2, query.fromUs);
    sqlite3_bind_int64(stmt, 3, query.toUs);
    if (after) {
      // Without an id the whole cursor timestamp counts as already seen.
      const std::int64_t defaultId = query.descending ? std::numeric_limits<std::int64_t>::min()
                                                      : std::numeric_limits<std::int64_t>::max();
      sqlite3_bind_int64(stmt, 4, *query.afterTimeUs);
      sqlite3_bind_int64(stmt, 5, query.afterId.value_or(defaultId));
    }
    sqlite3_bind_int64(stmt, 6, query.limit);
    sqlite3_bind_int64(stmt, 7, chunk.chunk);
    const std::size_t had = out.size();
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      StoredRecord& stored = out.emplace_back();
      stored.id = sqlite3_column_int64(stmt, 0);
      Record& record = stored.record;
      record.deviceId = query.deviceId;
      record.serverTimeUs = sqlite3_column_int64(stmt, 1);
      if (sqlite3_column_type(stmt, 2) != SQLITE_NULL) {
        record.deviceTimeUs = sqlite3_column_int64(stmt, 2);
      }
      record.nodeId = std::string(columnText(stmt, 3));
      record.topic = std::string(columnText(stmt, 4));
      record.payload = columnBlob(stmt, 5);
      record.payloadIsJson = (sqlite3_column_int64(stmt, 6) & kFlagPayloadJson) != 0;
      if (sqlite3_column_type(stmt, 7) != SQLITE_NULL &&
          !parseFields(columnText(stmt, 7), record.fields)) {
        return core::Error{"sqlite: stored fields of message " + std::to_string(stored.id) +
                           " are not valid JSON"};
      }
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "query messages");
    }
    // Each chunk's rows come in order; chunks overlap in time only around late records.
    if (had > 0 && out.size() > had) {
      std::inplace_merge(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(had), out.end(),
                         inOrder);
    }
    if (out.size() > query.limit) {
      out.resize(query.limit);
    }
  }
  return out;
}

core::Result<std::vector<Bucket>> SqliteStore::querySeries(const SeriesQuery& query) {
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
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  const bool byPath = query.key.find('"') == std::string::npos;
  auto prepared = lease->conn().statement(byPath ? kSqlSeriesByPath : kSqlSeriesByKey);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  ResetGuard reset(stmt);
  bindText(stmt, 1, query.deviceId);
  sqlite3_bind_int64(stmt, 2, query.fromUs);
  sqlite3_bind_int64(stmt, 3, query.toUs);
  // Quoted, because keys are flattened paths that contain dots themselves.
  const std::string path = "$.\"" + query.key + "\"";
  bindText(stmt, 4, byPath ? std::string_view(path) : std::string_view(query.key));

  std::vector<Bucket> out;
  double sum = 0;
  int rc = SQLITE_ROW;
  const auto finish = [&] {
    if (!out.empty()) {
      Bucket& bucket = out.back();
      switch (query.aggregate) {
        case Aggregate::kAvg:
          bucket.value = sum / static_cast<double>(bucket.count);
          break;
        case Aggregate::kSum:
          bucket.value = sum;
          break;
        case Aggregate::kCount:
          bucket.value = static_cast<double>(bucket.count);
          break;
        case Aggregate::kMin:
        case Aggregate::kMax:
        case Aggregate::kFirst:
        case Aggregate::kLast:
          break;  // kept up to date per row
      }
    }
  };
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const std::int64_t ts = sqlite3_column_int64(stmt, 0);
    const double value = sqlite3_column_double(stmt, 1);
    // Floor, not truncation, so times before the epoch land in the right bucket.
    std::int64_t rem = ts % query.bucketUs;
    if (rem < 0) {
      rem += query.bucketUs;
    }
    const std::int64_t start = ts - rem;
    if (out.empty() || out.back().startUs != start) {
      finish();
      out.push_back(Bucket{start, value, 0});
      sum = 0;
    }
    Bucket& bucket = out.back();
    ++bucket.count;
    sum += value;
    if (query.aggregate == Aggregate::kMin) {
      bucket.value = std::min(bucket.value, value);
    } else if (query.aggregate == Aggregate::kMax) {
      bucket.value = std::max(bucket.value, value);
    } else if (query.aggregate == Aggregate::kLast) {
      bucket.value = value;
    }  // kFirst: the value the bucket was opened with
  }
  if (rc != SQLITE_DONE) {
    return sqlError(lease->conn().db(), "query series");
  }
  finish();
  return out;
}

core::Result<DeviceSummary> SqliteStore::readDevice(sqlite3_stmt* stmt) {
  DeviceSummary summary;
  summary.deviceId = std::string(columnText(stmt, 0));
  summary.firstSeenUs = sqlite3_column_int64(stmt, 1);
  summary.lastSeenUs = sqlite3_column_int64(stmt, 2);
  summary.messageCount = sqlite3_column_int64(stmt, 3);
  if (!parseFields(columnText(stmt, 4), summary.latest)) {
    return core::Error{"sqlite: latest values of device " + summary.deviceId +
                       " are not valid JSON"};
  }
  summary.attributes = std::string(columnText(stmt, 5));
  summary.name = std::string(columnText(stmt, 7));
  summary.type = std::string(columnText(stmt, 8));
  std::vector<Field> tags;
  if (!parseFields(columnText(stmt, 6), tags)) {
    return core::Error{"sqlite: tags of device " + summary.deviceId + " are not valid JSON"};
  }
  for (Field& tag : tags) {
    if (auto* text = std::get_if<std::string>(&tag.value)) {
      summary.tags.emplace(std::move(tag.key), std::move(*text));
    }
  }
  return summary;
}

core::Result<std::vector<DeviceSummary>> SqliteStore::listDevices() {
  return readDevices(kSqlListDevices, nullptr, nullptr);
}

core::Result<std::vector<DeviceSummary>> SqliteStore::listDevicesWithTag(const std::string& key,
                                                                         const std::string& value) {
  return readDevices(kSqlDevicesWithTag, &key, &value);
}

core::Result<std::vector<DeviceSummary>> SqliteStore::readDevices(const char* sql,
                                                                  const std::string* key,
                                                                  const std::string* value) {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  auto prepared = lease->conn().statement(sql);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  ResetGuard reset(stmt);
  if (key != nullptr && value != nullptr) {
    bindText(stmt, 1, *key);
    bindText(stmt, 2, *value);
  }
  std::vector<DeviceSummary> out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    auto summary = readDevice(stmt);
    if (!summary) {
      return summary.error();
    }
    out.push_back(std::move(*summary));
  }
  if (rc != SQLITE_DONE) {
    return sqlError(lease->conn().db(), "list devices");
  }
  return out;
}

core::Result<std::optional<DeviceSummary>> SqliteStore::getDevice(const std::string& deviceId) {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  auto prepared = lease->conn().statement(kSqlGetDevice);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  ResetGuard reset(stmt);
  bindText(stmt, 1, deviceId);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) {
    return std::optional<DeviceSummary>();
  }
  if (rc != SQLITE_ROW) {
    return sqlError(lease->conn().db(), "get device");
  }
  auto summary = readDevice(stmt);
  if (!summary) {
    return summary.error();
  }
  return std::optional<DeviceSummary>(std::move(*summary));
}

core::Result<std::int64_t> SqliteStore::countMessages() {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  auto prepared = lease->conn().statement(kSqlCountMessages);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  ResetGuard reset(stmt);
  if (sqlite3_step(stmt) != SQLITE_ROW) {
    return sqlError(lease->conn().db(), "count messages");
  }
  return static_cast<std::int64_t>(sqlite3_column_int64(stmt, 0));
}

core::Status SqliteStore::check() {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  return lease->conn().run(kSqlCheck, "check");
}

core::Result<Connection*> SqliteStore::maintenanceLocked() {
  if (!maintenance_) {
    auto conn = Connection::tryOpen(path_, SQLITE_OPEN_READWRITE);
    if (!conn) {
      return conn.error();
    }
    maintenance_ = std::move(*conn);
  }
  return maintenance_.get();
}

core::Result<std::vector<std::int64_t>> SqliteStore::deviceRowIdsLocked(Connection& conn) {
  auto prepared = conn.statement(kSqlDeviceRowIds);
  if (!prepared) {
    return prepared.error();
  }
  ResetGuard reset(*prepared);
  std::vector<std::int64_t> ids;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(*prepared)) == SQLITE_ROW) {
    ids.push_back(sqlite3_column_int64(*prepared, 0));
  }
  if (rc != SQLITE_DONE) {
    return sqlError(conn.db(), "list devices for retention");
  }
  return ids;
}

void SqliteStore::yieldToWriter() const {
  // Bounded: a writer stuck waiting for another process must not stop maintenance for good.
  for (int i = 0; i < 1'000 && writerWaiting_.load(std::memory_order_relaxed); ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

core::Status SqliteStore::inMaintenanceTransaction(Connection& conn,
                                                   const std::function<core::Status()>& body,
                                                   std::string_view what) {
  yieldToWriter();
  if (auto begun = conn.run(kSqlBegin, "begin " + std::string(what)); !begun.ok()) {
    return begun;
  }
  core::Status status = body();
  if (status.ok()) {
    status = conn.run(kSqlCommit, "commit " + std::string(what));
  }
  if (!status.ok() && sqlite3_get_autocommit(conn.db()) == 0) {
    (void)conn.run(kSqlRollback, "rollback " + std::string(what));
  }
  return status;
}

core::Result<std::vector<std::int64_t>> SqliteStore::chunksLocked(Connection& conn, const char* sql,
                                                                  std::int64_t a, std::int64_t b) {
  auto prepared = conn.statement(sql);
  if (!prepared) {
    return prepared.error();
  }
  ResetGuard reset(*prepared);
  sqlite3_bind_int64(*prepared, 1, a);
  sqlite3_bind_int64(*prepared, 2, b);
  std::vector<std::int64_t> chunks;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(*prepared)) == SQLITE_ROW) {
    chunks.push_back(sqlite3_column_int64(*prepared, 0));
  }
  if (rc != SQLITE_DONE) {
    return sqlError(conn.db(), "list message chunks");
  }
  return chunks;
}

core::Result<std::int64_t> SqliteStore::slicesLocked(
    Connection& conn, const std::vector<std::int64_t>& chunks, const char* sql,
    const std::function<void(sqlite3_stmt*)>& bind,
    const std::function<core::Status(const std::map<std::int64_t, std::int64_t>&)>& after) {
  std::int64_t total = 0;
  for (const std::int64_t chunk : chunks) {
    const std::int64_t end = (chunk + 1) << kChunkShift;
    for (std::int64_t first = chunk << kChunkShift; first < end; first += kRetentionChunk) {
      std::int64_t changed = 0;
      auto status = inMaintenanceTransaction(conn, [&]() -> core::Status {
        auto stmt = conn.statement(sql);
        if (!stmt) {
          return stmt.error();
        }
        ResetGuard reset(*stmt);
        sqlite3_bind_int64(*stmt, 1, first);
        sqlite3_bind_int64(*stmt, 2, std::min(first + kRetentionChunk, end));
        bind(*stmt);
        std::map<std::int64_t, std::int64_t> perDevice;  // RETURNING device
        int rc = SQLITE_ROW;
        while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
          ++perDevice[sqlite3_column_int64(*stmt, 0)];
          ++changed;
        }
        if (rc != SQLITE_DONE) {
          return sqlError(conn.db(), "retention");
        }
        return perDevice.empty() ? core::Status{} : after(perDevice);
      });
      if (!status.ok()) {
        return core::Error{status.message()};
      }
      total += changed;
    }
  }
  return total;
}

core::Status SqliteStore::deleteOldRollupsLocked(Connection& conn, std::int64_t device,
                                                 std::int64_t cutoffUs, const std::string* key) {
  // Rollups of whole units before the cutoff go with their messages (the unit holding the
  // cutoff stays, below the floor, until the next run).
  const std::pair<const char*, std::int64_t> all[] = {
      {kSqlDeleteOldMinutes, rollup::floorTo(cutoffUs, rollup::kMinuteUs)},
      {kSqlDeleteOldHours, rollup::floorTo(cutoffUs, rollup::kHourUs)},
      {kSqlDeleteOldDirty, rollup::floorTo(cutoffUs, rollup::kMinuteUs)}};
  const std::pair<const char*, std::int64_t> ofKey[] = {
      {kSqlDeleteOldKeyMinutes, rollup::floorTo(cutoffUs, rollup::kMinuteUs)},
      {kSqlDeleteOldKeyHours, rollup::floorTo(cutoffUs, rollup::kHourUs)}};
  const auto rollups = key == nullptr
                           ? std::span<const std::pair<const char*, std::int64_t>>(all)
                           : std::span<const std::pair<const char*, std::int64_t>>(ofKey);
  for (const auto& [sql, before] : rollups) {
    auto del = conn.statement(sql);
    if (!del) {
      return del.error();
    }
    ResetGuard reset(*del);
    sqlite3_bind_int64(*del, 1, device);
    sqlite3_bind_int64(*del, 2, before);
    if (key != nullptr) {
      bindText(*del, 3, *key);
    }
    if (sqlite3_step(*del) != SQLITE_DONE) {
      return sqlError(conn.db(), "delete old rollups");
    }
  }
  return {};
}

core::Status SqliteStore::resetFirstSeenLocked(
    Connection& conn, const std::vector<std::pair<std::int64_t, std::int64_t>>& chunksByStart,
    std::int64_t device) {
  // A device's oldest message: chunks by start time, until no later chunk can start earlier
  // than the oldest found (one or two seeks, where the oldest remaining chunks are).
  std::optional<std::int64_t> first;
  auto stmt = conn.statement(kSqlFirstInChunk);
  if (!stmt) {
    return stmt.error();
  }
  for (const auto& [chunk, minTs] : chunksByStart) {
    if (first && minTs >= *first) {
      break;
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, chunk);
    sqlite3_bind_int64(*stmt, 2, device);
    if (sqlite3_step(*stmt) != SQLITE_ROW) {
      return sqlError(conn.db(), "find a device's oldest message");
    }
    if (sqlite3_column_type(*stmt, 0) != SQLITE_NULL) {
      const std::int64_t ts = sqlite3_column_int64(*stmt, 0);
      first = first ? std::min(*first, ts) : ts;
    }
  }
  if (!first) {
    return {};  // no messages left: first_seen stays (and restarts with the next message)
  }
  auto set = conn.statement(kSqlSetFirstSeen);
  if (!set) {
    return set.error();
  }
  ResetGuard reset(*set);
  sqlite3_bind_int64(*set, 1, device);
  sqlite3_bind_int64(*set, 2, *first);
  if (sqlite3_step(*set) != SQLITE_DONE) {
    return sqlError(conn.db(), "update device after retention");
  }
  return {};
}

core::Result<std::int64_t> SqliteStore::deleteBefore(std::int64_t cutoffUs) {
  std::lock_guard lock(maintenanceMutex_);
  auto conn = maintenanceLocked();
  if (!conn) {
    return conn.error();
  }
  Connection& c = **conn;
  // Before any message goes: from now on queries use no rollup of a unit before the cutoff.
  if (auto status = raiseFloorLocked(c, kMetaFloor, cutoffUs); !status) {
    return core::Error{status.message()};
  }
  auto chunks = chunksLocked(c, kSqlChunksBefore, cutoffUs, 0);
  if (!chunks) {
    return chunks.error();
  }
  // Slice by slice, each device's count following in the same transaction.
  std::set<std::int64_t> touched;
  auto total = slicesLocked(
      c, *chunks, kSqlDeleteSlice,
      [&](sqlite3_stmt* stmt) { sqlite3_bind_int64(stmt, 3, cutoffUs); },
      [&](const std::map<std::int64_t, std::int64_t>& perDevice) -> core::Status {
        auto count = c.statement(kSqlCountDown);
        if (!count) {
          return count.error();
        }
        for (const auto& [device, n] : perDevice) {
          ResetGuard reset(*count);
          sqlite3_bind_int64(*count, 1, device);
          sqlite3_bind_int64(*count, 2, n);
          if (sqlite3_step(*count) != SQLITE_DONE) {
            return sqlError(c.db(), "count down after retention");
          }
          touched.insert(device);
        }
        return {};
      });
  if (!total) {
    return total.error();
  }
  // Chunks that are now empty leave the directory, even when this run deleted nothing.
  auto forgotten = inMaintenanceTransaction(c, [&]() -> core::Status {
    auto stmt = c.statement(kSqlDropEmptyChunks);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, cutoffUs);
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(c.db(), "forget empty message chunks");
    }
    return {};
  });
  if (!forgotten.ok()) {
    return core::Error{forgotten.message()};
  }
  if (touched.empty()) {
    return total;
  }
  // Then each device that lost messages: its first-seen time and its old rollups.
  std::vector<std::pair<std::int64_t, std::int64_t>> byStart;
  {
    auto stmt = c.statement(kSqlChunksByStart);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      byStart.emplace_back(sqlite3_column_int64(*stmt, 0), sqlite3_column_int64(*stmt, 1));
    }
    if (rc != SQLITE_DONE) {
      return sqlError(c.db(), "list message chunks");
    }
  }
  for (const std::int64_t device : touched) {
    auto status = inMaintenanceTransaction(c, [&]() -> core::Status {
      if (auto reset = resetFirstSeenLocked(c, byStart, device); !reset.ok()) {
        return reset;
      }
      return deleteOldRollupsLocked(c, device, cutoffUs, nullptr);
    });
    if (!status.ok()) {
      return core::Error{status.message()};
    }
  }
  return total;
}

core::Result<std::int64_t> SqliteStore::dropKeyBefore(const std::string& key,
                                                      std::int64_t cutoffUs) {
  if (key.empty() || key.find('"') != std::string::npos) {
    return core::Error{"sqlite: per-key retention needs a key without '\"'"};
  }
  std::string path = "$.\"";
  path += key;
  path += '"';
  std::string metaKey = "retention_key:";
  metaKey += key;
  std::lock_guard lock(maintenanceMutex_);
  auto conn = maintenanceLocked();
  if (!conn) {
    return conn.error();
  }
  Connection& c = **conn;
  // Rows before the previous run's cutoff were already done.
  std::int64_t from = std::numeric_limits<std::int64_t>::min();
  {
    auto stmt = c.statement(kSqlGetMeta);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    bindText(*stmt, 1, metaKey);
    if (sqlite3_step(*stmt) == SQLITE_ROW) {
      const std::string_view text = columnText(*stmt, 0);
      std::from_chars(text.data(), text.data() + text.size(), from);
    }
  }
  if (from >= cutoffUs) {
    return std::int64_t{0};
  }
  if (auto status = raiseFloorLocked(c, std::string(kMetaFloor) + ":" + key, cutoffUs); !status) {
    return core::Error{status.message()};
  }
  auto chunks = chunksLocked(c, kSqlChunksOfKeyRange, from, cutoffUs);
  if (!chunks) {
    return chunks.error();
  }
  // The key's rollups of whole units before the cutoff go in the same transaction as its values.
  auto total = slicesLocked(
      c, *chunks, kSqlDropKeySlice,
      [&](sqlite3_stmt* stmt) {
        bindText(stmt, 3, path);
        sqlite3_bind_int64(stmt, 4, from);
        sqlite3_bind_int64(stmt, 5, cutoffUs);
      },
      [&](const std::map<std::int64_t, std::int64_t>& perDevice) -> core::Status {
        for (const auto& [device, n] : perDevice) {
          if (auto status = deleteOldRollupsLocked(c, device, cutoffUs, &key); !status.ok()) {
            return status;
          }
        }
        return {};
      });
  if (!total) {
    return total.error();
  }
  auto stmt = c.statement(kSqlSetMeta);
  if (!stmt) {
    return stmt.error();
  }
  ResetGuard reset(*stmt);
  bindText(*stmt, 1, metaKey);
  const std::string value = std::to_string(cutoffUs);
  bindText(*stmt, 2, value);
  if (sqlite3_step(*stmt) != SQLITE_DONE) {
    return sqlError(c.db(), "record per-key retention progress");
  }
  return total;
}

// --- device tags and attributes ----------------------------------------------------------------

core::Result<Connection*> SqliteStore::updaterLocked() {
  if (!updater_) {
    auto conn = Connection::tryOpen(path_, SQLITE_OPEN_READWRITE);
    if (!conn) {
      return conn.error();
    }
    updater_ = std::move(*conn);
  }
  return updater_.get();
}

core::Status SqliteStore::inUpdateTransaction(
    const std::function<core::Status(Connection&)>& body) {
  std::lock_guard lock(updateMutex_);
  auto conn = updaterLocked();
  if (!conn) {
    return conn.error();
  }
  if (auto begun = (*conn)->run(kSqlBegin, "begin device write"); !begun.ok()) {
    return begun;
  }
  core::Status status = body(**conn);
  if (status.ok()) {
    status = (*conn)->run(kSqlCommit, "commit device write");
  }
  if (!status.ok() && sqlite3_get_autocommit((*conn)->db()) == 0) {
    (void)(*conn)->run(kSqlRollback, "rollback device write");
  }
  return status;
}

core::Result<DeviceSummary> SqliteStore::updateDevice(const std::string& deviceId,
                                                      const DeviceUpdate& update) {
  if (auto status = inUpdateTransaction(
          [&](Connection& conn) { return updateDeviceLocked(conn, deviceId, update); });
      !status.ok()) {
    return core::Error{status.message()};
  }
  auto device = getDevice(deviceId);
  if (!device) {
    return device.error();
  }
  if (!device->has_value()) {
    return core::Error{"sqlite: device " + deviceId + " vanished after its update"};
  }
  return std::move(**device);
}

core::Result<bool> SqliteStore::deleteDevice(const std::string& deviceId) {
  // The row id, read once: the device row stays until the last transaction, so the writer keeps
  // adding to this id until then, and row ids are never reused (schema 5).
  std::int64_t rowId = 0;
  {
    auto lease = readers_.acquire();
    if (!lease) {
      return lease.error();
    }
    auto found = findDeviceRowId(lease->conn(), deviceId);
    if (!found) {
      return found.error();
    }
    if (!*found) {
      return false;
    }
    rowId = **found;
  }
  const auto step = [&](Connection& conn, const char* sql, bool chunk,
                        std::int64_t& changed) -> core::Status {
    auto stmt = conn.statement(sql);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, rowId);
    if (chunk) {
      sqlite3_bind_int64(*stmt, 2, kRetentionChunk);
    }
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(conn.db(), "delete device");
    }
    changed = sqlite3_changes64(conn.db());
    return {};
  };
  // 1. The history, a chunk per transaction, so the writer waits at most one chunk.
  for (const char* sql : {kSqlDeleteDeviceChunk, kSqlDeleteDeviceMinutes, kSqlDeleteDeviceHours,
                          kSqlDeleteDeviceDirty}) {
    std::int64_t changed = kRetentionChunk;
    // Bounded by the rows there are: a chunk that deletes fewer than a full chunk ends it.
    while (changed >= kRetentionChunk) {
      auto status = inUpdateTransaction([&](Connection& conn) -> core::Status {
        if (auto deleted = step(conn, sql, true, changed); !deleted.ok()) {
          return deleted;
        }
        if (sql != kSqlDeleteDeviceChunk || changed == 0) {
          return {};
        }
        // The count follows each chunk, so an interrupted delete leaves a true summary.
        auto count = conn.statement(kSqlDeleteDeviceCount);
        if (!count) {
          return count.error();
        }
        ResetGuard reset(*count);
        sqlite3_bind_int64(*count, 1, rowId);
        sqlite3_bind_int64(*count, 2, changed);
        if (sqlite3_step(*count) != SQLITE_DONE) {
          return sqlError(conn.db(), "count down a deleted device");
        }
        return {};
      });
      if (!status.ok()) {
        return core::Error{status.message()};
      }
    }
  }
  // 2. What arrived meanwhile, the tags and the row, at once. A batch the writer commits after
  //    this finds its cached row gone and registers the device anew (a new row id).
  auto status = inUpdateTransaction([&](Connection& conn) -> core::Status {
    for (const char* sql :
         {kSqlDeleteDeviceMessagesRest, kSqlDeleteDeviceMinutesRest, kSqlDeleteDeviceHoursRest,
          kSqlDeleteDeviceDirtyRest, kSqlDeleteDeviceTags, kSqlDeleteDeviceRow}) {
      std::int64_t changed = 0;
      if (auto deleted = step(conn, sql, false, changed); !deleted.ok()) {
        return deleted;
      }
    }
    return {};
  });
  if (!status.ok()) {
    return core::Error{status.message()};
  }
  return true;
}

core::Status SqliteStore::updateDeviceLocked(Connection& conn, const std::string& deviceId,
                                             const DeviceUpdate& update) {
  if (update.attributes) {
    auto check = conn.statement(kSqlCheckObject);
    if (!check) {
      return check.error();
    }
    ResetGuard reset(*check);
    bindText(*check, 1, *update.attributes);
    if (sqlite3_step(*check) != SQLITE_ROW) {
      return core::Error{"sqlite: device attributes are not valid JSON"};
    }
    if (columnText(*check, 0) != "object") {
      return core::Error{"sqlite: device attributes must be a JSON object"};
    }
  }
  std::int64_t rowId = 0;
  {
    auto stmt = conn.statement(kSqlRegisterDevice);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    bindText(*stmt, 1, deviceId);
    sqlite3_bind_int64(*stmt, 2, kNeverSeenFirstUs);
    sqlite3_bind_int64(*stmt, 3, kNeverSeenLastUs);
    if (sqlite3_step(*stmt) != SQLITE_ROW) {
      return sqlError(conn.db(), "register device");
    }
    rowId = sqlite3_column_int64(*stmt, 0);
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(conn.db(), "register device");
    }
  }
  if (update.attributes) {
    auto stmt = conn.statement(kSqlSetAttributes);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, rowId);
    bindText(*stmt, 2, *update.attributes);
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(conn.db(), "set device attributes");
    }
  }
  for (const auto& [sql, value] :
       {std::pair{kSqlSetName, &update.name}, std::pair{kSqlSetType, &update.type}}) {
    if (!*value) continue;
    auto stmt = conn.statement(sql);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, rowId);
    bindText(*stmt, 2, **value);
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(conn.db(), "set device name or type");
    }
  }
  if (update.tags) {
    auto clear = conn.statement(kSqlClearTags);
    if (!clear) {
      return clear.error();
    }
    {
      ResetGuard reset(*clear);
      sqlite3_bind_int64(*clear, 1, rowId);
      if (sqlite3_step(*clear) != SQLITE_DONE) {
        return sqlError(conn.db(), "clear device tags");
      }
    }
    auto insert = conn.statement(kSqlInsertTag);
    if (!insert) {
      return insert.error();
    }
    for (const auto& [key, value] : *update.tags) {
      ResetGuard reset(*insert);
      sqlite3_bind_int64(*insert, 1, rowId);
      bindText(*insert, 2, key);
      bindText(*insert, 3, value);
      if (sqlite3_step(*insert) != SQLITE_DONE) {
        return sqlError(conn.db(), "set device tag");
      }
    }
  }
  return {};
}

// --- fleet queries -----------------------------------------------------------------------------
// Composed from fragments and run as one statement each. Devices are the outer loop (CROSS JOIN
// fixes SQLite's join order): a group is one range of device_tags_key_value, and each device's
// messages are one range of the (chunk, device, ts) index per chunk of the window.

// The FROM clause that yields the group's devices as `d`, and the condition that goes with it.
std::string groupSource(const DeviceGroup& group) {
  return group.everyDevice() ? "devices AS d"
                             : "device_tags AS g CROSS JOIN devices AS d ON d.id = g.device";
}
std::string groupCondition(const DeviceGroup& group) {
  return group.everyDevice() ? "" : "g.key = :gkey AND g.value = :gvalue AND ";
}

// A numeric value of `key` in the flat JSON column `column`: through a JSON path when the key
// can be quoted in one (no '"'), else through json_each (which then joins as `j`).
struct NumericValue {
  std::string join;       // appended to the FROM clause
  std::string condition;  // keeps numbers only
  std::string value;
};
NumericValue numericValue(const std::string& key, std::string_view column) {
  NumericValue out;
  if (key.find('"') == std::string::npos) {
    const std::string col(column);
    out.condition = "json_type(" + col + ", :path) IN ('integer', 'real')";
    out.value = "json_extract(" + col + ", :path)";
  } else {
    out.join = ", json_each(" + std::string(column) + ") AS j";
    out.condition = "j.key = :key AND j.type IN ('integer', 'real')";
    out.value = "j.value";
  }
  return out;
}

// Copied (SQLITE_TRANSIENT): callers pass temporaries.
void bindNamed(sqlite3_stmt* stmt, const char* name, std::string_view text) {
  if (const int index = sqlite3_bind_parameter_index(stmt, name); index > 0) {
    sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  }
}
void bindNamed(sqlite3_stmt* stmt, const char* name, std::int64_t value) {
  if (const int index = sqlite3_bind_parameter_index(stmt, name); index > 0) {
    sqlite3_bind_int64(stmt, index, value);
  }
}
void bindNamed(sqlite3_stmt* stmt, const char* name, double value) {
  if (const int index = sqlite3_bind_parameter_index(stmt, name); index > 0) {
    sqlite3_bind_double(stmt, index, value);
  }
}

void bindFleet(sqlite3_stmt* stmt, const DeviceGroup& group, const std::string& key) {
  bindNamed(stmt, ":gkey", group.tagKey);
  bindNamed(stmt, ":gvalue", group.tagValue);
  bindNamed(stmt, ":key", key);
  bindNamed(stmt, ":path", "$.\"" + key + "\"");
}

// Runs a composed statement on `conn` and hands each row to `row`.
template <class Row>
core::Status runComposedOn(Connection& conn, const std::string& sql, std::string_view what,
                           const std::function<void(sqlite3_stmt*)>& bind, Row&& row) {
  auto prepared = conn.composedStatement(sql);
  if (!prepared) {
    return prepared.error();
  }
  sqlite3_stmt* stmt = *prepared;
  ResetGuard reset(stmt);
  bind(stmt);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (auto status = row(stmt); !status.ok()) {
      return status;
    }
  }
  if (rc != SQLITE_DONE) {
    return sqlError(conn.db(), what);
  }
  return {};
}

// The same on a reader.
template <class Row>
core::Status runComposed(ReaderPool& readers, const std::string& sql, std::string_view what,
                         const std::function<void(sqlite3_stmt*)>& bind, Row&& row) {
  auto lease = readers.acquire();
  if (!lease) {
    return lease.error();
  }
  return runComposedOn(lease->conn(), sql, what, bind, std::forward<Row>(row));
}

core::Result<std::vector<FleetDevice>> SqliteStore::fleetLatest(const FleetLatestQuery& query) {
  const std::string sql = "SELECT d.device_id, d.last_seen, d.latest FROM " +
                          groupSource(query.group) + " WHERE " + groupCondition(query.group) +
                          "d.latest <> '{}' ORDER BY d.device_id";
  std::vector<FleetDevice> out;
  std::vector<Field> latest;
  auto status = runComposed(
      readers_, sql, "fleet latest", [&](sqlite3_stmt* stmt) { bindFleet(stmt, query.group, {}); },
      [&](sqlite3_stmt* stmt) -> core::Status {
        latest.clear();
        if (!parseFields(columnText(stmt, 2), latest)) {
          return core::Error{"sqlite: latest values of a device are not valid JSON"};
        }
        FleetDevice device;
        for (Field& field : latest) {
          if (query.keys.empty() ||
              std::find(query.keys.begin(), query.keys.end(), field.key) != query.keys.end()) {
            device.values.push_back(std::move(field));
          }
        }
        if (device.values.empty()) {
          return {};
        }
        device.deviceId = std::string(columnText(stmt, 0));
        device.lastSeenUs = sqlite3_column_int64(stmt, 1);
        device.count = static_cast<std::int64_t>(device.values.size());
        out.push_back(std::move(device));
        return {};
      });
  if (!status.ok()) {
    return core::Error{status.message()};
  }
  return out;
}

core::Result<std::vector<FleetDevice>> SqliteStore::fleetThreshold(
    const FleetThresholdQuery& query) {
  const NumericValue v = numericValue(query.key, "d.latest");
  const std::string sql = "SELECT d.device_id, d.last_seen, " + v.value + " FROM " +
                          groupSource(query.group) + v.join + " WHERE " +
                          groupCondition(query.group) + v.condition + " AND " + v.value +
                          (query.below ? " < " : " > ") + ":threshold ORDER BY d.device_id";
  std::vector<FleetDevice> out;
  auto status = runComposed(
      readers_, sql, "fleet threshold",
      [&](sqlite3_stmt* stmt) {
        bindFleet(stmt, query.group, query.key);
        bindNamed(stmt, ":threshold", query.threshold);
      },
      [&](sqlite3_stmt* stmt) -> core::Status {
        FleetDevice& device = out.emplace_back();
        device.deviceId = std::string(columnText(stmt, 0));
        device.lastSeenUs = sqlite3_column_int64(stmt, 1);
        device.value = sqlite3_column_double(stmt, 2);
        device.count = 1;
        return {};
      });
  if (!status.ok()) {
    return core::Error{status.message()};
  }
  return out;
}

core::Result<std::vector<FleetDevice>> SqliteStore::fleetWindowAverage(
    const FleetWindowQuery& query) {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  Connection& conn = lease->conn();
  // One snapshot for the rollup state, the rollups and the raw rows.
  ReadTransaction transaction(conn);
  if (auto status = transaction.begin(); !status) {
    return core::Error{status.message()};
  }
  // [lo, hi): the whole minutes rollups answer (less the dirty ones).
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  if (query.useRollups) {
    auto watermark = readMetaInt(conn, kMetaWatermark, rollup::kNoWatermark);
    auto floor = readMetaInt(conn, kMetaFloor, rollup::kNoWatermark);
    auto keyFloor =
        readMetaInt(conn, std::string(kMetaFloor) + ":" + query.key, rollup::kNoWatermark);
    if (!watermark || !floor || !keyFloor) {
      return !watermark ? watermark.error() : !floor ? floor.error() : keyFloor.error();
    }
    if (*watermark != rollup::kNoWatermark) {
      lo = rollup::ceilTo(std::max({query.fromUs, *floor, *keyFloor}), rollup::kMinuteUs);
      hi = rollup::floorTo(std::min(query.toUs, *watermark), rollup::kMinuteUs);
    }
  }
  const NumericValue v = numericValue(query.key, "m.fields");
  const std::string source = groupSource(query.group);
  const std::string condition = groupCondition(query.group);
  // Numeric values of the group's raw rows in [from, to); `from`/`to` are SQL expressions.
  const auto raw = [&](const std::string& from, const std::string& to,
                       const std::string& extraJoin) {
    return "SELECT d.id, " + v.value + ", 1 FROM " + source + extraJoin +
           " CROSS JOIN messages AS m INDEXED BY messages_chunk_device_ts ON m.chunk IN "
           "(SELECT chunk FROM message_chunks WHERE min_ts < " +
           to + " AND max_ts >= " + from + ") AND m.device = d.id AND m.ts >= " + from +
           " AND m.ts < " + to + v.join + " WHERE " + condition + v.condition;
  };
  std::string sql;
  if (lo < hi) {
    const std::string parts =
        "SELECT r.device, r.sum, r.n FROM " + source +
        " CROSS JOIN rollup_1m AS r ON r.device = d.id AND r.bucket >= :lo AND r.bucket < :hi "
        "AND r.key = :key WHERE " +
        condition +
        "NOT EXISTS (SELECT 1 FROM rollup_dirty AS x WHERE x.device = r.device AND "
        "x.bucket = r.bucket) UNION ALL " +
        raw(":from", ":lo", "") + " UNION ALL " + raw(":hi", ":to", "") + " UNION ALL " +
        raw("x.bucket", "x.bucket + 60000000",
            " CROSS JOIN rollup_dirty AS x ON x.device = d.id AND x.bucket >= :lo AND "
            "x.bucket < :hi");
    // total(): a real sum even of integers, so the division is never an integer one.
    sql = "WITH p(device, s, n) AS (" + parts +
          ") SELECT d.device_id, d.last_seen, total(p.s) / sum(p.n), sum(p.n) FROM p CROSS JOIN "
          "devices AS d ON d.id = p.device GROUP BY p.device HAVING total(p.s) / sum(p.n)" +
          (query.below ? " < " : " > ") + ":threshold ORDER BY d.device_id";
  } else {
    // Raw rows only: the group's devices in id order, so grouping needs no sort.
    sql =
        "SELECT d.device_id, d.last_seen, avg(" + v.value + "), count(*) FROM " + source +
        " CROSS JOIN messages AS m INDEXED BY messages_chunk_device_ts ON m.chunk IN " TERN_CHUNKS(
            ":from", ":to") " AND m.device = d.id AND m.ts >= :from AND m.ts < :to" +
        v.join + " WHERE " + condition + v.condition + " GROUP BY d.id HAVING avg(" + v.value +
        (query.below ? ") < " : ") > ") + ":threshold ORDER BY d.device_id";
  }
  std::vector<FleetDevice> out;
  auto status = runComposedOn(
      conn, sql, "fleet window average",
      [&](sqlite3_stmt* stmt) {
        bindFleet(stmt, query.group, query.key);
        bindNamed(stmt, ":from", query.fromUs);
        bindNamed(stmt, ":to", query.toUs);
        bindNamed(stmt, ":lo", lo);
        bindNamed(stmt, ":hi", hi);
        bindNamed(stmt, ":threshold", query.threshold);
      },
      [&](sqlite3_stmt* stmt) -> core::Status {
        FleetDevice& device = out.emplace_back();
        device.deviceId = std::string(columnText(stmt, 0));
        device.lastSeenUs = sqlite3_column_int64(stmt, 1);
        device.value = sqlite3_column_double(stmt, 2);
        device.count = sqlite3_column_int64(stmt, 3);
        return {};
      });
  if (!status.ok()) {
    return core::Error{status.message()};
  }
  return out;
}

core::Result<std::vector<FleetDailyRow>> SqliteStore::fleetDaily(const FleetDailyQuery& query) {
  std::string aggregate;
  const NumericValue v = numericValue(query.key, "m.fields");
  switch (query.aggregate) {
    case Aggregate::kAvg:
      aggregate = "avg(" + v.value + ")";
      break;
    case Aggregate::kMin:
      aggregate = "min(" + v.value + ")";
      break;
    case Aggregate::kMax:
      aggregate = "max(" + v.value + ")";
      break;
    case Aggregate::kSum:
      aggregate = "total(" + v.value + ")";
      break;
    case Aggregate::kCount:
      aggregate = "count(*)";
      break;
    case Aggregate::kFirst:
    case Aggregate::kLast:
      return core::Error{"fleet daily: first and last are not offered"};
  }
  const bool byTag = !query.byTag.empty();
  // Floored, so days before the epoch are whole days too.
  const std::string sql =
      "SELECT m.ts - (((m.ts % 86400000000) + 86400000000) % 86400000000) AS day, " +
      std::string(byTag ? "b.value" : "NULL") + " AS grp, " + aggregate + ", count(*) FROM " +
      groupSource(query.group) +
      (byTag ? " LEFT JOIN device_tags AS b ON b.device = d.id AND b.key = :by" : "") +
      " CROSS JOIN messages AS m INDEXED BY messages_chunk_device_ts ON m.chunk IN " TERN_CHUNKS(
          ":from", ":to") " AND m.device = d.id AND m.ts >= :from AND m.ts < :to" +
      v.join + " WHERE " + groupCondition(query.group) + v.condition +
      " GROUP BY day, grp ORDER BY day, grp NULLS LAST";
  std::vector<FleetDailyRow> out;
  auto status = runComposed(
      readers_, sql, "fleet daily",
      [&](sqlite3_stmt* stmt) {
        bindFleet(stmt, query.group, query.key);
        bindNamed(stmt, ":from", query.fromUs);
        bindNamed(stmt, ":to", query.toUs);
        bindNamed(stmt, ":by", query.byTag);
      },
      [&](sqlite3_stmt* stmt) -> core::Status {
        FleetDailyRow& row = out.emplace_back();
        row.dayUs = sqlite3_column_int64(stmt, 0);
        if (sqlite3_column_type(stmt, 1) != SQLITE_NULL) {
          row.group = std::string(columnText(stmt, 1));
        }
        row.value = sqlite3_column_double(stmt, 2);
        row.count = sqlite3_column_int64(stmt, 3);
        return {};
      });
  if (!status.ok()) {
    return core::Error{status.message()};
  }
  return out;
}

core::Status SqliteStore::markDirty(std::span<const Record> records,
                                    const std::vector<std::size_t>& recordDevice,
                                    const std::vector<DeviceBatch>& devices) {
  // Read in the writer's transaction: a rollup run announces its target before it reads, so
  // every record it may miss is marked here.
  auto pending = readMetaInt(*writer_, kMetaPending, rollup::kNoWatermark);
  if (!pending) {
    return pending.error();
  }
  if (*pending == rollup::kNoWatermark) {
    return {};
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (records[i].serverTimeUs >= *pending) {
      continue;
    }
    auto stmt = writer_->statement(kSqlMarkDirty);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, devices[recordDevice[i]].rowId);
    sqlite3_bind_int64(*stmt, 2, rollup::floorTo(records[i].serverTimeUs, rollup::kMinuteUs));
    if (sqlite3_step(*stmt) != SQLITE_DONE) {
      return sqlError(writer_->db(), "mark a rolled-up minute dirty");
    }
  }
  return {};
}

core::Result<std::int64_t> SqliteStore::rollupDevice(Connection& conn, std::int64_t device,
                                                     std::int64_t fromUs, std::int64_t toUs,
                                                     RollupRun& run) {
  std::map<std::pair<std::int64_t, std::string>, rollup::Partial> minutes;  // (minute, key)
  std::int64_t values = 0;
  const auto read = [&](std::int64_t from, std::int64_t to) -> core::Status {
    auto stmt = conn.statement(kSqlRollupRows);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, device);
    sqlite3_bind_int64(*stmt, 2, from);
    sqlite3_bind_int64(*stmt, 3, to);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      const std::int64_t ts = sqlite3_column_int64(*stmt, 0);
      const std::int64_t id = sqlite3_column_int64(*stmt, 1);
      minutes[{rollup::floorTo(ts, rollup::kMinuteUs), std::string(columnText(*stmt, 2))}].add(
          ts, id, sqlite3_column_double(*stmt, 3));
      ++values;
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "read messages to roll up");
    }
    return {};
  };
  if (fromUs < toUs) {
    if (auto status = read(fromUs, toUs); !status) {
      return core::Error{status.message()};
    }
  }
  // Dirty minutes before the range are redone whole; later ones are in the range (or after
  // it, where queries read raw rows anyway).
  std::vector<std::int64_t> dirty;
  {
    auto stmt = conn.statement(kSqlDirtyOfDevice);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, device);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      dirty.push_back(sqlite3_column_int64(*stmt, 0));
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "read dirty minutes");
    }
  }
  // Queries use an hour's rollup only once the watermark has passed its end (rollup::query),
  // so an hour is built once, when it is complete, not again in every run while it fills:
  // the complete hours of the minutes written below, and the hour that held the old
  // watermark once it is complete (its minutes came in earlier runs, maybe none in this one).
  std::set<std::int64_t> hours;
  const auto addHour = [&hours, toUs](std::int64_t minute) {
    const std::int64_t hour = rollup::floorTo(minute, rollup::kHourUs);
    if (hour + rollup::kHourUs <= toUs) {
      hours.insert(hour);
    }
  };
  if (rollup::floorTo(fromUs, rollup::kHourUs) < fromUs) {
    addHour(fromUs);
  }
  for (const std::int64_t minute : dirty) {
    if (minute >= fromUs) {
      continue;
    }
    if (auto status = read(minute, minute + rollup::kMinuteUs); !status) {
      return core::Error{status.message()};
    }
    addHour(minute);
    ++run.dirtyMinutes;
  }
  auto put = conn.statement(kSqlPutMinute);
  if (!put) {
    return put.error();
  }
  for (const auto& [at, partial] : minutes) {
    ResetGuard reset(*put);
    bindPartial(*put, device, at.first, at.second, partial);
    if (sqlite3_step(*put) != SQLITE_DONE) {
      return sqlError(conn.db(), "write a minute rollup");
    }
    addHour(at.first);
  }
  run.minutes += static_cast<std::int64_t>(minutes.size());
  // Hours from their minutes (those of other keys are rewritten unchanged).
  auto minutesOf = conn.statement(kSqlMinutesOfRange);
  auto putHour = conn.statement(kSqlPutHour);
  if (!minutesOf || !putHour) {
    return !minutesOf ? minutesOf.error() : putHour.error();
  }
  for (const std::int64_t hour : hours) {
    std::map<std::string, rollup::Partial, std::less<>> keys;
    {
      ResetGuard reset(*minutesOf);
      sqlite3_bind_int64(*minutesOf, 1, device);
      sqlite3_bind_int64(*minutesOf, 2, hour);
      sqlite3_bind_int64(*minutesOf, 3, hour + rollup::kHourUs);
      int rc = SQLITE_ROW;
      while ((rc = sqlite3_step(*minutesOf)) == SQLITE_ROW) {
        keys[std::string(columnText(*minutesOf, 1))].merge(readPartial(*minutesOf));
      }
      if (rc != SQLITE_DONE) {
        return sqlError(conn.db(), "read minute rollups");
      }
    }
    for (const auto& [key, partial] : keys) {
      ResetGuard reset(*putHour);
      bindPartial(*putHour, device, hour, key, partial);
      if (sqlite3_step(*putHour) != SQLITE_DONE) {
        return sqlError(conn.db(), "write an hour rollup");
      }
    }
  }
  if (!dirty.empty()) {
    auto clear = conn.statement(kSqlClearDirty);
    if (!clear) {
      return clear.error();
    }
    ResetGuard reset(*clear);
    sqlite3_bind_int64(*clear, 1, device);
    if (sqlite3_step(*clear) != SQLITE_DONE) {
      return sqlError(conn.db(), "clear dirty minutes");
    }
  }
  return values;
}

core::Result<RollupRun> SqliteStore::rollup(std::int64_t untilUs) {
  std::lock_guard lock(maintenanceMutex_);
  auto opened = maintenanceLocked();
  if (!opened) {
    return opened.error();
  }
  Connection& conn = **opened;
  const auto inTransaction = [&](const std::function<core::Status()>& body) {
    return inMaintenanceTransaction(conn, body, "rollup");
  };

  // 1. Announce the target. From this commit on the writer marks every record before it dirty,
  //    so anything the reads below miss is redone by the next run.
  std::int64_t watermark = rollup::kNoWatermark;
  std::int64_t target = rollup::floorTo(untilUs, rollup::kMinuteUs);
  core::Status status = inTransaction([&]() -> core::Status {
    auto w = readMetaInt(conn, kMetaWatermark, rollup::kNoWatermark);
    auto p = readMetaInt(conn, kMetaPending, rollup::kNoWatermark);
    if (!w || !p) {
      return !w ? w.error() : p.error();
    }
    watermark = *w;
    std::int64_t base = watermark;
    if (base == rollup::kNoWatermark) {
      // The first run starts at the oldest message (devices.first_seen, no scan).
      auto stmt = conn.statement(kSqlMinFirstSeen);
      if (!stmt) {
        return stmt.error();
      }
      ResetGuard reset(*stmt);
      if (sqlite3_step(*stmt) == SQLITE_ROW && sqlite3_column_type(*stmt, 0) != SQLITE_NULL) {
        base = rollup::floorTo(sqlite3_column_int64(*stmt, 0), rollup::kMinuteUs);
      } else {
        base = target;
      }
    }
    target = std::max(watermark, std::min(target, base + kRollupMaxSpanUs));
    if (target > *p) {
      return writeMetaInt(conn, kMetaPending, target);
    }
    return {};
  });
  if (!status) {
    return core::Error{status.message()};
  }

  // 2. Device by device, in short transactions.
  auto devices = deviceRowIdsLocked(conn);
  if (!devices) {
    return devices.error();
  }
  RollupRun run;
  std::size_t next = 0;
  while (next < devices->size()) {
    status = inTransaction([&]() -> core::Status {
      std::int64_t values = 0;
      for (std::size_t n = 0;
           next < devices->size() && n < kRollupChunkDevices && values < kRollupChunkValues;
           ++n, ++next) {
        auto read = rollupDevice(conn, (*devices)[next], watermark, target, run);
        if (!read) {
          return read.error();
        }
        values += *read;
      }
      return {};
    });
    if (!status) {
      return core::Error{status.message()};
    }
  }

  // 3. Move the watermark: queries now use the rollups up to it.
  if (target > watermark) {
    status = inTransaction([&] { return writeMetaInt(conn, kMetaWatermark, target); });
    if (!status) {
      return core::Error{status.message()};
    }
  }
  run.watermarkUs = target;
  return run;
}

core::Status SqliteStore::raiseFloorLocked(Connection& conn, const std::string& metaKey,
                                           std::int64_t cutoffUs) {
  return inMaintenanceTransaction(
      conn,
      [&]() -> core::Status {
        auto floor = readMetaInt(conn, metaKey, rollup::kNoWatermark);
        if (!floor) {
          return floor.error();
        }
        return cutoffUs > *floor ? writeMetaInt(conn, metaKey, cutoffUs) : core::Status{};
      },
      "rollup floor");
}

core::Result<std::optional<std::vector<Bucket>>> SqliteStore::querySeriesRolledUp(
    const SeriesQuery& query) {
  using Out = std::optional<std::vector<Bucket>>;
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  Connection& conn = lease->conn();
  // One snapshot for the state, the rollups and the raw rows.
  ReadTransaction transaction(conn);
  if (auto status = transaction.begin(); !status) {
    return core::Error{status.message()};
  }
  rollup::State state;
  auto watermark = readMetaInt(conn, kMetaWatermark, rollup::kNoWatermark);
  auto floor = readMetaInt(conn, kMetaFloor, rollup::kNoWatermark);
  auto keyFloor =
      readMetaInt(conn, std::string(kMetaFloor) + ":" + query.key, rollup::kNoWatermark);
  if (!watermark || !floor || !keyFloor) {
    return !watermark ? watermark.error() : !floor ? floor.error() : keyFloor.error();
  }
  if (*watermark == rollup::kNoWatermark) {
    return Out();
  }
  state.watermarkUs = *watermark;
  state.floorUs = std::max(*floor, *keyFloor);

  auto found = findDeviceRowId(conn, query.deviceId);
  if (!found) {
    return found.error();
  }
  if (!*found) {
    return Out(std::vector<Bucket>{});
  }
  const std::int64_t device = **found;
  {
    auto stmt = conn.statement(kSqlDirtyInRange);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, device);
    sqlite3_bind_int64(*stmt, 2, rollup::floorTo(query.fromUs, rollup::kHourUs));
    sqlite3_bind_int64(*stmt, 3, query.toUs);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      state.dirtyMinutes.push_back(sqlite3_column_int64(*stmt, 0));
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "read dirty minutes");
    }
  }

  rollup::Source source;
  source.rolled = [&](bool hours, std::int64_t from,
                      std::int64_t to) -> core::Result<std::vector<rollup::TimedPartial>> {
    auto stmt = conn.statement(hours ? kSqlHoursOfRange : kSqlMinutesOfRange);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, device);
    sqlite3_bind_int64(*stmt, 2, from);
    sqlite3_bind_int64(*stmt, 3, to);
    std::vector<rollup::TimedPartial> out;
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      if (columnText(*stmt, 1) == query.key) {
        out.emplace_back(sqlite3_column_int64(*stmt, 0), readPartial(*stmt));
      }
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "read rollups");
    }
    return out;
  };
  const bool byPath = query.key.find('"') == std::string::npos;
  const std::string path = "$.\"" + query.key + "\"";
  source.raw = [&](std::int64_t from,
                   std::int64_t to) -> core::Result<std::vector<rollup::RawValue>> {
    auto stmt = conn.statement(byPath ? kSqlRawValuesByPath : kSqlRawValuesByKey);
    if (!stmt) {
      return stmt.error();
    }
    ResetGuard reset(*stmt);
    sqlite3_bind_int64(*stmt, 1, device);
    sqlite3_bind_int64(*stmt, 2, from);
    sqlite3_bind_int64(*stmt, 3, to);
    bindText(*stmt, 4, byPath ? std::string_view(path) : std::string_view(query.key));
    std::vector<rollup::RawValue> out;
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
      out.push_back(rollup::RawValue{sqlite3_column_int64(*stmt, 0), sqlite3_column_int64(*stmt, 1),
                                     sqlite3_column_double(*stmt, 2)});
    }
    if (rc != SQLITE_DONE) {
      return sqlError(conn.db(), "query series");
    }
    return out;
  };
  return rollup::query(query, state, source);
}

core::Result<std::string> SqliteStore::explainMessages(bool descending) {
  auto lease = readers_.acquire();
  if (!lease) {
    return lease.error();
  }
  sqlite3* db = lease->conn().db();
  const std::string sql =
      std::string("EXPLAIN QUERY PLAN ") + (descending ? kSqlMessagesDesc : kSqlMessagesAsc);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return sqlError(db, "prepare explain");
  }
  std::string plan;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    plan += columnText(stmt, 3);  // columns: id, parent, notused, detail
    plan += '\n';
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) {
    return sqlError(db, "explain");
  }
  return plan;
}

}  // namespace

std::unique_ptr<Store> openSqliteStore(const SqliteOptions& options) {
  return std::make_unique<SqliteStore>(options);
}

int sqliteSchemaVersion() {
  return kSchemaVersion;
}

core::Result<std::string> explainMessageQuery(Store& store, bool descending) {
  auto* sqliteStore = dynamic_cast<SqliteStore*>(&store);
  if (sqliteStore == nullptr) {
    return core::Error{"not a SQLite store"};
  }
  return sqliteStore->explainMessages(descending);
}

}  // namespace tern::storage::sqlite
