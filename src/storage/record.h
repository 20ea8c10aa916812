#pragma once
// The unit of stored data: one routed message, stamped by the gateway.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tern::storage {

using FieldValue = std::variant<std::int64_t, double, bool, std::string>;

struct Field {
  std::string key;  // flattened JSON path, e.g. "a.b"
  FieldValue value;
};

struct Record {
  std::string deviceId;
  std::int64_t serverTimeUs = 0;             // when the gateway received it, UTC µs
  std::optional<std::int64_t> deviceTimeUs;  // from a "ts"/"time" field, when present
  std::string nodeId;                        // the gateway node it came through
  std::string topic;
  std::string payload;  // raw bytes, always kept
  // false: the payload is stored raw and flagged; fields, if any, come from a decoder (trackers).
  bool payloadIsJson = false;
  std::vector<Field> fields;
};

// A record as read back, with its store-assigned id (monotonic per store).
struct StoredRecord {
  std::int64_t id = 0;
  Record record;
};

}  // namespace tern::storage
