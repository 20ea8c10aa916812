#pragma once
#include <memory>
#include <string>

#include "core/result.h"
#include "storage/store.h"

namespace tern::storage::sqlite {

struct SqliteOptions {
  std::string path;       // the database file
  bool syncFull = false;  // synchronous=FULL (power loss) instead of NORMAL (process crash)
  std::int64_t cacheBytes = 256LL * 1024 * 1024;
};

// Opens (creating or upgrading the schema as needed). Throws std::runtime_error on start-up
// failure: this runs before the data plane.
std::unique_ptr<Store> openSqliteStore(const SqliteOptions& options);

// The schema version this build writes.
int sqliteSchemaVersion();

// The index on messages(chunk, device, ts) that every per-device query should use.
inline constexpr const char* kMessagesIndexName = "messages_chunk_device_ts";

// For tests and diagnostics: SQLite's EXPLAIN QUERY PLAN for the query behind
// Store::queryMessages (first page, ascending or descending), one plan step per line.
// Fails when `store` is not a SQLite store.
core::Result<std::string> explainMessageQuery(Store& store, bool descending = false);

}  // namespace tern::storage::sqlite
