#include "trackers/position_record.h"

namespace tern::trackers {

namespace trk = codec::trackers;

storage::Record toRecord(const trk::Position& position, std::string_view rawFrame,
                         const std::string& nodeId, std::int64_t serverTimeUs) {
  storage::Record record;
  record.deviceId = position.deviceId;
  record.serverTimeUs = serverTimeUs;
  if (position.deviceTimeUs != 0) record.deviceTimeUs = position.deviceTimeUs;
  record.nodeId = nodeId;
  record.topic = "trackers/" + position.protocol;
  record.payload = std::string(rawFrame);  // the raw frame, always kept
  record.payloadIsJson = false;
  auto& f = record.fields;
  f.reserve(10 + position.attributes.size());
  f.push_back({"protocol", std::string(position.protocol)});
  if (position.hasLocation) {
    f.push_back({"valid", position.valid});
    f.push_back({"lat", position.latitude});
    f.push_back({"lon", position.longitude});
    f.push_back({"speed", position.speedKmh});
    if (position.course) f.push_back({"course", *position.course});
    if (position.altitude) f.push_back({"altitude", *position.altitude});
  }
  if (position.satellites) f.push_back({"sat", std::int64_t{*position.satellites}});
  if (position.hdop) f.push_back({"hdop", *position.hdop});
  for (const auto& attribute : position.attributes) {
    storage::FieldValue value =
        std::visit([](const auto& v) -> storage::FieldValue { return v; }, attribute.value);
    // Attributes never shadow the position's own fields.
    bool taken = false;
    for (const auto& existing : f) taken = taken || existing.key == attribute.key;
    if (!taken) f.push_back({attribute.key, std::move(value)});
  }
  return record;
}

}  // namespace tern::trackers
