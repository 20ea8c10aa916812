#pragma once
// OsmAnd / Traccar Client: positions as HTTP query parameters
// (GET or POST /?id=…&lat=…&lon=…&timestamp=…&speed=…). The HTTP part lives in trackers/; this is
// the pure parameter → Position mapping.
#include <map>
#include <optional>
#include <string>

#include "codec/trackers/position.h"

namespace tern::codec::trackers {

struct OsmandResult {
  std::optional<Position> position;
  // Why there is no position, naming the parameter: "parameter 'id' is required",
  // "invalid parameter 'lat'", "parameter 'lon' out of range", ...
  std::string error;
};

// `params` are already percent-decoded. `serverTimeUs` is used when no timestamp is given.
// The device id is Position::deviceId; the caller decides whether the device is known.
OsmandResult decodeOsmand(const std::map<std::string, std::string>& params,
                          std::int64_t serverTimeUs);

}  // namespace tern::codec::trackers
