#pragma once
// Store types → API JSON. Times are RFC 3339 ms UTC; every string is forced to valid UTF-8 so a
// stored oddity can never produce invalid JSON.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <vector>

#include "storage/record.h"
#include "storage/store.h"

namespace tern::api {

boost::json::value fieldValueToJson(const storage::FieldValue& value);
// Flattened keys stay flat ("a.b": 1); a later duplicate key wins.
boost::json::object fieldsToJson(const std::vector<storage::Field>& fields);
boost::json::object deviceToJson(const storage::DeviceSummary& device);
boost::json::object messageToJson(const storage::StoredRecord& stored);
// Compact JSON text. Unlike boost::json::serialize (1.81 writes 21.5 as "2.15E1"), doubles come
// out in their shortest round-trip decimal form, and integral ones keep a ".0" so clients still
// read them as floating point.
std::string toJsonText(const boost::json::value& value);
// NaN and infinities have no JSON spelling; they become null.
boost::json::value numberToJson(double value);

}  // namespace tern::api
