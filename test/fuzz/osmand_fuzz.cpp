// libFuzzer target for the OsmAnd parameter decoder: the input is read as a query string
// (k=v&k=v…, no percent-decoding, which the HTTP layer does), decoded, and every position that
// comes out must have coordinates in range and a device id.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "codec/trackers/osmand/osmand.h"

namespace trk = tern::codec::trackers;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> params;
  while (!input.empty()) {
    const std::size_t amp = input.find('&');
    std::string_view item = input.substr(0, amp);
    input = amp == std::string_view::npos ? std::string_view{} : input.substr(amp + 1);
    const std::size_t eq = item.find('=');
    params[std::string(item.substr(0, eq))] =
        eq == std::string_view::npos ? std::string{} : std::string(item.substr(eq + 1));
  }
  trk::OsmandResult result = trk::decodeOsmand(params, 1'700'000'000'000'000);
  if (result.position) {
    const trk::Position& p = *result.position;
    if (p.deviceId.empty()) std::abort();
    if (p.hasLocation && (p.latitude < -90.0001 || p.latitude > 90.0001 ||
                          p.longitude < -180.0001 || p.longitude > 180.0001)) {
      std::abort();
    }
  } else if (result.error.empty()) {
    std::abort();  // no position must come with a reason
  }
  return 0;
}
