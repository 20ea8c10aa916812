#pragma once
// Turns a decoded tracker position into the stored record: one vocabulary of fields for every
// protocol (lat, lon, speed, course, ... plus the attributes), so the API can serve tracks and
// latest positions without knowing protocols.
#include <cstdint>
#include <string>
#include <string_view>

#include "codec/trackers/position.h"
#include "storage/record.h"

namespace tern::trackers {

storage::Record toRecord(const codec::trackers::Position& position, std::string_view rawFrame,
                         const std::string& nodeId, std::int64_t serverTimeUs);

}  // namespace tern::trackers
