#include "ingest/normalizer.h"

#include <simdjson.h>

#include <charconv>
#include <cstdint>
#include <limits>
#include <system_error>
#include <utility>

#include "codec/mqtt/topic.h"
#include "core/time.h"

namespace tern::ingest {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::string_view kTopicPrefix = "topic:";
constexpr std::string_view kJsonPrefix = "json:";
constexpr unsigned kMaxTopicLevel = 65535;

// The DOM API is used rather than On-Demand because its kernel is picked at run time (AVX2 and
// so on), while On-Demand would be compiled for the baseline target. A parser is not
// thread-safe and keeps its buffers between documents, so each thread has its own.
simdjson::dom::parser& threadParser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

void appendIndex(std::string& path, std::size_t index) {
  char buffer[24];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, index).ptr;
  path.append(buffer, end);
}

// Appends the leaves under `value` with keys prefixed by `path`. A flag rather than an empty
// path marks the top level, since "" is a valid key. Recursion depth is bounded by the parser's
// maximum nesting depth.
void flatten(element value, bool topLevel, std::string& path, std::vector<storage::Field>& fields) {
  const std::size_t base = path.size();
  switch (value.type()) {
    case element_type::OBJECT: {
      // Copied into locals: ranging over a temporary simdjson_result would dangle.
      simdjson::dom::object object;
      if (value.get(object) != simdjson::SUCCESS) {
        return;  // cannot happen: the type was checked
      }
      for (const auto [key, child] : object) {
        if (!topLevel) {
          path += '.';
        }
        path += key;
        flatten(child, false, path, fields);
        path.resize(base);
      }
      return;
    }
    case element_type::ARRAY: {
      simdjson::dom::array array;
      if (value.get(array) != simdjson::SUCCESS) {
        return;
      }
      std::size_t index = 0;
      for (const element child : array) {
        if (!topLevel) {
          path += '.';
        }
        appendIndex(path, index++);
        flatten(child, false, path, fields);
        path.resize(base);
      }
      return;
    }
    case element_type::INT64:
      fields.push_back({path, value.get_int64().value_unsafe()});
      return;
    case element_type::UINT64:
      // Only values above INT64_MAX are typed UINT64; they do not fit the int64 field type.
      fields.push_back({path, static_cast<double>(value.get_uint64().value_unsafe())});
      return;
    case element_type::DOUBLE:
      fields.push_back({path, value.get_double().value_unsafe()});
      return;
    case element_type::BOOL:
      fields.push_back({path, value.get_bool().value_unsafe()});
      return;
    case element_type::STRING:
      fields.push_back({path, std::string(value.get_string().value_unsafe())});
      return;
    case element_type::NULL_VALUE:
      return;  // null carries no value worth storing
  }
}

std::optional<std::int64_t> timeFrom(element value) {
  switch (value.type()) {
    case element_type::STRING:
      return core::parseIso8601(value.get_string().value_unsafe());
    case element_type::INT64:
      return core::epochToMicros(static_cast<double>(value.get_int64().value_unsafe()));
    case element_type::UINT64:
      return core::epochToMicros(static_cast<double>(value.get_uint64().value_unsafe()));
    case element_type::DOUBLE:
      return core::epochToMicros(value.get_double().value_unsafe());
    default:
      return std::nullopt;
  }
}

// The device time from a top-level "ts", else "time"; a value that is not a time is ignored.
std::optional<std::int64_t> deviceTime(simdjson::dom::object object) {
  for (const std::string_view name : {"ts", "time"}) {
    element value;
    if (object.at_key(name).get(value) == simdjson::SUCCESS) {
      if (auto micros = timeFrom(value)) {
        return micros;
      }
    }
  }
  return std::nullopt;
}

// The 1-based topic level, or nullopt when the topic has fewer levels.
std::optional<std::string_view> topicLevel(std::string_view topic, int level) {
  std::size_t start = 0;
  for (int i = 1; i < level; ++i) {
    const std::size_t slash = topic.find('/', start);
    if (slash == std::string_view::npos) {
      return std::nullopt;
    }
    start = slash + 1;
  }
  const std::size_t end = topic.find('/', start);
  return topic.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

}  // namespace

bool flattenJson(std::string_view payload, std::vector<storage::Field>& fields,
                 std::optional<std::int64_t>& deviceTimeUs) {
  fields.clear();
  deviceTimeUs.reset();
  element root;
  // Copies into the parser's padded buffer: the payload has no SIMD padding of its own.
  if (threadParser().parse(payload.data(), payload.size(), true).get(root) != simdjson::SUCCESS) {
    return false;
  }
  simdjson::dom::object object;
  if (root.get(object) == simdjson::SUCCESS) {
    deviceTimeUs = deviceTime(object);
  } else if (root.type() != element_type::ARRAY) {
    return false;
  }
  std::string path;
  flatten(root, true, path, fields);
  return true;
}

Normalizer::Normalizer(const std::vector<core::IngestRoute>& routes, std::string nodeId)
    : nodeId_(std::move(nodeId)) {
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const core::IngestRoute& route = routes[i];
    const std::string key = "ingest.routes[" + std::to_string(i) + "]";
    if (!codec::mqtt::validTopicFilter(route.filter)) {
      throw core::ConfigError(key + ": invalid MQTT topic filter '" + route.filter + "'");
    }
    CompiledRoute compiled;
    compiled.filter = route.filter;
    const std::string_view source = route.deviceId;
    if (source.starts_with(kTopicPrefix)) {
      const std::string_view digits = source.substr(kTopicPrefix.size());
      unsigned level = 0;
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
      if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() ||
          level < 1 || level > kMaxTopicLevel) {
        throw core::ConfigError(key + ": device_id '" + route.deviceId +
                                "': the topic level must be a number from 1 to 65535");
      }
      compiled.topicLevel = static_cast<int>(level);
    } else if (source.starts_with(kJsonPrefix)) {
      const std::string_view field = source.substr(kJsonPrefix.size());
      if (field.empty() || field.front() == '.' || field.back() == '.' ||
          field.find("..") != std::string_view::npos) {
        throw core::ConfigError(key + ": device_id '" + route.deviceId +
                                "': expected a field name or dotted path after json:");
      }
      compiled.jsonField = std::string(field);
    } else {
      throw core::ConfigError(key + ": device_id: expected topic:N or json:FIELD, got '" +
                              route.deviceId + "'");
    }
    routes_.push_back(std::move(compiled));
  }
}

bool Normalizer::matches(std::string_view topic) const {
  for (const CompiledRoute& route : routes_) {
    if (codec::mqtt::topicMatches(route.filter, topic)) {
      return true;
    }
  }
  return false;
}

std::optional<storage::Record> Normalizer::normalize(std::string_view topic,
                                                     std::string_view payload,
                                                     std::int64_t serverTimeUs) const {
  const CompiledRoute* route = nullptr;
  for (const CompiledRoute& candidate : routes_) {
    if (codec::mqtt::topicMatches(candidate.filter, topic)) {
      route = &candidate;
      break;  // the first matching route decides, even if it then finds no device id
    }
  }
  if (route == nullptr) {
    return std::nullopt;
  }

  storage::Record record;
  if (route->topicLevel > 0) {
    // Checked before parsing, so unroutable messages cost no JSON work.
    const auto level = topicLevel(topic, route->topicLevel);
    if (!level || level->empty()) {
      return std::nullopt;
    }
    record.deviceId = std::string(*level);
  }
  record.payloadIsJson = flattenJson(payload, record.fields, record.deviceTimeUs);
  if (!route->jsonField.empty()) {
    // The flattened key of a nested field is its dotted path, so one lookup covers both.
    if (!record.payloadIsJson) {
      return std::nullopt;
    }
    for (const storage::Field& field : record.fields) {
      if (field.key != route->jsonField) {
        continue;
      }
      if (const auto* text = std::get_if<std::string>(&field.value)) {
        record.deviceId = *text;
      } else if (const auto* number = std::get_if<std::int64_t>(&field.value)) {
        record.deviceId = std::to_string(*number);
      }
      break;
    }
    if (record.deviceId.empty()) {
      return std::nullopt;
    }
  }
  record.serverTimeUs = serverTimeUs;
  record.nodeId = nodeId_;
  record.topic = std::string(topic);
  record.payload = std::string(payload);
  return record;
}

}  // namespace tern::ingest
