// PLACEHOLDER: being written.
#include "codec/trackers/osmand/osmand.h"

namespace tern::codec::trackers {

OsmandResult decodeOsmand(const std::map<std::string, std::string>&, std::int64_t) {
  return {std::nullopt, "not implemented yet"};
}

}  // namespace tern::codec::trackers
