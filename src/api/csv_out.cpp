#include "api/csv_out.h"

#include <charconv>
#include <cmath>
#include <unordered_map>

#include "api/encoding.h"
#include "core/time.h"

namespace tern::api {
namespace {

constexpr std::string_view kLineEnd = "\r\n";

std::string doubleText(double value) {
  if (!std::isfinite(value)) return {};  // like JSON null: an empty cell
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return {};
  return std::string(buffer, end);
}

std::string fieldText(const storage::FieldValue& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return doubleText(*d);
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  return toValidUtf8(std::get<std::string>(value));
}

}  // namespace

void appendCsvField(std::string& out, std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(value);
    return;
  }
  out.push_back('"');
  for (char c : value) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

std::string messagesToCsv(std::span<const storage::StoredRecord> records) {
  // The field columns are the union of keys on this page, so every row has the same shape.
  std::vector<std::string> keys;
  std::unordered_map<std::string, std::size_t> column;
  for (const auto& stored : records) {
    for (const auto& field : stored.record.fields) {
      if (column.emplace(field.key, keys.size()).second) keys.push_back(field.key);
    }
  }
  std::string out;
  out.append("id,ts,device_ts,node,topic");
  for (const auto& key : keys) {
    out.push_back(',');
    appendCsvField(out, toValidUtf8(key));
  }
  out.append(",payload,payload_encoding");
  out.append(kLineEnd);

  std::vector<std::string> cells(keys.size());
  for (const auto& stored : records) {
    const storage::Record& record = stored.record;
    out.append(std::to_string(stored.id));
    out.push_back(',');
    out.append(core::formatRfc3339Millis(record.serverTimeUs));
    out.push_back(',');
    if (record.deviceTimeUs) out.append(core::formatRfc3339Millis(*record.deviceTimeUs));
    out.push_back(',');
    appendCsvField(out, toValidUtf8(record.nodeId));
    out.push_back(',');
    appendCsvField(out, toValidUtf8(record.topic));
    for (auto& cell : cells) cell.clear();
    for (const auto& field : record.fields) cells[column.at(field.key)] = fieldText(field.value);
    for (const auto& cell : cells) {
      out.push_back(',');
      appendCsvField(out, cell);
    }
    out.push_back(',');
    // Payloads are arbitrary bytes: text as is, anything else as base64 (as in the JSON API).
    if (isValidUtf8(record.payload)) {
      appendCsvField(out, record.payload);
      out.append(",utf8");
    } else {
      out.append(base64Encode(record.payload));
      out.append(",base64");
    }
    out.append(kLineEnd);
  }
  return out;
}

std::string seriesToCsv(std::span<const storage::Bucket> buckets) {
  std::string out = "ts,value,count";
  out.append(kLineEnd);
  for (const auto& bucket : buckets) {
    out.append(core::formatRfc3339Millis(bucket.startUs));
    out.push_back(',');
    out.append(doubleText(bucket.value));
    out.push_back(',');
    out.append(std::to_string(bucket.count));
    out.append(kLineEnd);
  }
  return out;
}

}  // namespace tern::api
