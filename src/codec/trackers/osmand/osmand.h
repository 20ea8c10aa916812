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
  std::string error;  // why there is no position: names the parameter
};

// `params` are already percent-decoded. `serverTimeUs` is used when no timestamp is given.
OsmandResult decodeOsmand(const std::map<std::string, std::string>& params,
                          std::int64_t serverTimeUs);

}  // namespace tern::codec::trackers
