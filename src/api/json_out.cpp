#include "api/json_out.h"

#include <boost/json/parse.hpp>
#include <charconv>
#include <cmath>
#include <type_traits>

#include "api/encoding.h"
#include "core/logging.h"
#include "core/time.h"

namespace tern::api {
namespace {

void appendString(std::string& out, std::string_view text) {
  // Values from callbacks (healthInfo) are not vetted; invalid bytes must not reach the client.
  if (!isValidUtf8(text)) {
    appendString(out, toValidUtf8(text));
    return;
  }
  out += '"';
  core::appendJsonEscaped(out, text);  // the log writer's escaping; the text is valid UTF-8
  out += '"';
}

void appendDouble(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  const std::string_view text(buf, static_cast<std::size_t>(result.ptr - buf));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

template <class Int>
void appendInteger(std::string& out, Int value) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, result.ptr);
}

void appendValue(std::string& out, const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::null:
      out += "null";
      break;
    case boost::json::kind::bool_:
      out += value.get_bool() ? "true" : "false";
      break;
    case boost::json::kind::int64:
      appendInteger(out, value.get_int64());
      break;
    case boost::json::kind::uint64:
      appendInteger(out, value.get_uint64());
      break;
    case boost::json::kind::double_:
      appendDouble(out, value.get_double());
      break;
    case boost::json::kind::string:
      appendString(out, value.get_string());
      break;
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value.get_array()) {
        if (!first) out += ',';
        first = false;
        appendValue(out, element);
      }
      out += ']';
      break;
    }
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& member : value.get_object()) {
        if (!first) out += ',';
        first = false;
        appendString(out, member.key());
        out += ':';
        appendValue(out, member.value());
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string toJsonText(const boost::json::value& value) {
  std::string out;
  appendValue(out, value);
  return out;
}

boost::json::value numberToJson(double value) {
  if (!std::isfinite(value)) return nullptr;
  return value;
}

boost::json::value fieldValueToJson(const storage::FieldValue& value) {
  return std::visit(
      [](const auto& v) -> boost::json::value {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return boost::json::value(toValidUtf8(v));
        } else if constexpr (std::is_same_v<T, double>) {
          return numberToJson(v);
        } else {
          return boost::json::value(v);
        }
      },
      value);
}

boost::json::object fieldsToJson(const std::vector<storage::Field>& fields) {
  boost::json::object out;
  out.reserve(fields.size());
  for (const auto& field : fields) {
    out[toValidUtf8(field.key)] = fieldValueToJson(field.value);
  }
  return out;
}

boost::json::object deviceToJson(const storage::DeviceSummary& device) {
  boost::json::object out;
  out["id"] = toValidUtf8(device.deviceId);
  out["name"] = toValidUtf8(device.name);
  out["type"] = toValidUtf8(device.type);
  // A device registered through PUT that has not sent anything yet.
  if (device.neverSeen()) {
    out["first_seen"] = nullptr;
    out["last_seen"] = nullptr;
  } else {
    out["first_seen"] = core::formatRfc3339Millis(device.firstSeenUs);
    out["last_seen"] = core::formatRfc3339Millis(device.lastSeenUs);
  }
  out["message_count"] = device.messageCount;
  out["latest"] = fieldsToJson(device.latest);
  boost::json::object tags;
  for (const auto& [key, value] : device.tags) tags[toValidUtf8(key)] = toValidUtf8(value);
  out["tags"] = std::move(tags);
  // Written by the API as a JSON object; anything else (edited by hand) shows as empty.
  boost::system::error_code ec;
  boost::json::value attributes = boost::json::parse(device.attributes, ec);
  if (ec || !attributes.is_object()) attributes = boost::json::object();
  out["attributes"] = std::move(attributes);
  return out;
}

boost::json::object messageToJson(const storage::StoredRecord& stored) {
  const storage::Record& record = stored.record;
  boost::json::object out;
  out["id"] = stored.id;
  out["ts"] = core::formatRfc3339Millis(record.serverTimeUs);
  if (record.deviceTimeUs) out["device_ts"] = core::formatRfc3339Millis(*record.deviceTimeUs);
  out["node"] = toValidUtf8(record.nodeId);
  out["topic"] = toValidUtf8(record.topic);
  out["fields"] = fieldsToJson(record.fields);
  // Payloads are arbitrary bytes; text goes out as is, anything else losslessly as base64.
  if (isValidUtf8(record.payload)) {
    out["payload"] = record.payload;
    out["payload_encoding"] = "utf8";
  } else {
    out["payload"] = base64Encode(record.payload);
    out["payload_encoding"] = "base64";
  }
  out["json"] = record.payloadIsJson;
  return out;
}

}  // namespace tern::api
