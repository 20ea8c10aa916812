#pragma once
// Turns a routed MQTT message into a Record: device id from the route, server time, node id,
// raw payload, and the payload's JSON flattened to typed fields.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "storage/record.h"

namespace tern::ingest {

// Flattens a JSON document into fields: {"a":{"b":1},"ok":true} → a.b=1, ok=true.
// Integers stay int64 (doubles when out of range), arrays are indexed "a.0", "a.1", null is
// skipped. A top-level "ts" or "time" (ISO 8601 string, or epoch seconds/milliseconds number)
// fills deviceTimeUs and is also kept as a field. Returns false if `payload` is not a JSON object
// or array (the caller stores it raw and flags it).
bool flattenJson(std::string_view payload, std::vector<storage::Field>& fields,
                 std::optional<std::int64_t>& deviceTimeUs);

class Normalizer {
 public:
  // Throws core::ConfigError for a bad route (invalid filter, or a device id source that is
  // neither "topic:N" nor "json:FIELD").
  Normalizer(const std::vector<core::IngestRoute>& routes, std::string nodeId);

  // Whether any route matches the topic (cheap; no payload parsing).
  bool matches(std::string_view topic) const;

  // The record for a message, or nullopt when no route matches or the route's device id cannot
  // be found (the topic level is missing or empty, the JSON field is absent).
  std::optional<storage::Record> normalize(std::string_view topic, std::string_view payload,
                                           std::int64_t serverTimeUs) const;

 private:
  struct CompiledRoute {
    std::string filter;
    int topicLevel = 0;  // 1-based; 0 when the id comes from JSON
    std::string jsonField;
  };
  std::vector<CompiledRoute> routes_;
  std::string nodeId_;
};

}  // namespace tern::ingest
