#pragma once
// Store types → CSV (RFC 4180: comma-separated, CRLF line ends, a header row, fields quoted when
// they hold a comma, quote or line break). For spreadsheets and scripts that want a table.
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/record.h"
#include "storage/store.h"

namespace tern::api {

inline constexpr std::string_view kCsvContentType = "text/csv; charset=utf-8";

// Appends one CSV field, quoted only when needed.
void appendCsvField(std::string& out, std::string_view value);

// Columns: id, ts, device_ts, node, topic, one column per field key (in order of first appearance
// across the records), payload, payload_encoding. A record without a key has an empty cell.
std::string messagesToCsv(std::span<const storage::StoredRecord> records);

// Columns: ts, value, count.
std::string seriesToCsv(std::span<const storage::Bucket> buckets);

}  // namespace tern::api
