#pragma once
// The one storage interface. Backends live in subfolders; only app/ names them.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"
#include "storage/record.h"

namespace tern::storage {

struct MessageQuery {
  std::string deviceId;
  std::int64_t fromUs = 0;  // inclusive, server time
  std::int64_t toUs = INT64_MAX;  // exclusive
  std::uint32_t limit = 100;
  bool descending = false;
  // Keyset cursor: continue after (serverTimeUs, id) of the last record of the previous page.
  std::optional<std::int64_t> afterTimeUs;
  std::optional<std::int64_t> afterId;
};

// kFirst/kLast: the value of the earliest/latest record in the bucket (by server time, then
// store id) that has a numeric value of the key.
enum class Aggregate { kAvg, kMin, kMax, kSum, kCount, kFirst, kLast };

struct SeriesQuery {
  std::string deviceId;
  std::string key;
  std::int64_t fromUs = 0;
  std::int64_t toUs = INT64_MAX;
  std::int64_t bucketUs = 60'000'000;
  Aggregate aggregate = Aggregate::kAvg;
};

struct Bucket {
  std::int64_t startUs = 0;
  double value = 0;
  std::int64_t count = 0;  // numeric values in the bucket
};

struct DeviceSummary {
  std::string deviceId;
  std::int64_t firstSeenUs = 0;
  std::int64_t lastSeenUs = 0;
  std::int64_t messageCount = 0;
  std::vector<Field> latest;  // the latest value of every key the device has sent
};

class Store {
 public:
  virtual ~Store() = default;

  // Writes a batch in one transaction and returns only once it is committed with the configured
  // durability. Called from one writer thread only.
  virtual core::Status appendBatch(std::span<const Record> records) = 0;

  // Reads. Safe to call from any thread concurrently with appendBatch.
  virtual core::Result<std::vector<StoredRecord>> queryMessages(const MessageQuery& query) = 0;
  virtual core::Result<std::vector<Bucket>> querySeries(const SeriesQuery& query) = 0;
  virtual core::Result<std::vector<DeviceSummary>> listDevices() = 0;
  virtual core::Result<std::optional<DeviceSummary>> getDevice(const std::string& deviceId) = 0;
  virtual core::Result<std::int64_t> countMessages() = 0;

  // Retention. Deletes messages whose server time is before `cutoffUs`; device summaries follow
  // (count, first seen; latest values stay). Works in short transactions so ingest is never
  // blocked for long, and may run on any thread concurrently with appendBatch. Returns the number
  // of messages deleted.
  virtual core::Result<std::int64_t> deleteBefore(std::int64_t cutoffUs) {
    (void)cutoffUs;
    return core::Error{backendName() + ": retention is not supported"};
  }
  // Per-key retention: removes `key` from the fields of messages before `cutoffUs` (the message
  // and its other fields stay). Returns the number of messages changed.
  virtual core::Result<std::int64_t> dropKeyBefore(const std::string& key, std::int64_t cutoffUs) {
    (void)key;
    (void)cutoffUs;
    return core::Error{backendName() + ": per-key retention is not supported"};
  }

  // A short backend name and whether it is usable right now, for health checks.
  virtual std::string backendName() const = 0;
  virtual core::Status check() = 0;
};

}  // namespace tern::storage
