#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "storage/store.h"

namespace tern::storage::postgres {

struct PostgresOptions {
  // A postgresql:// URL or a libpq keyword string ("host=... dbname=...").
  std::string url;
  // Messages are range-partitioned by server time in partitions this long (plain PostgreSQL),
  // or chunks this long (TimescaleDB).
  std::int64_t partitionUs = 86'400'000'000;  // one day
  // Partitions created ahead at start, counting today.
  int partitionsAhead = 3;
  // Reconnect backoff after a failed connection attempt: doubles from min to max.
  std::chrono::milliseconds reconnectMin{100};
  std::chrono::milliseconds reconnectMax{5000};
  // Try TimescaleDB when the server offers it (first start only; the layout is then fixed).
  bool useTimescale = true;
  // Fault injection for tests: the next this-many batches lose their COMMIT reply (the socket is
  // shut right after COMMIT is sent), as when the server or network fails at that moment.
  int faultLoseCommitReplies = 0;
};

// Connects, runs pending migrations and creates the partitions ahead. Throws
// std::runtime_error on start-up failure (database unreachable, newer schema): this runs
// before the data plane. Afterwards every error is returned, and lost connections are
// re-established with backoff.
std::unique_ptr<Store> openPostgresStore(const PostgresOptions& options);

// The schema version this build writes.
int postgresSchemaVersion();

// The index on messages(device_id, ts, id) that every per-device query uses.
inline constexpr const char* kMessagesIndexName = "messages_device_ts";

// For tests and diagnostics: how messages are laid out ("partitioned" or "timescaledb").
// Fails when `store` is not a PostgreSQL store or the database is unreachable.
core::Result<std::string> messagesLayout(Store& store);

}  // namespace tern::storage::postgres
