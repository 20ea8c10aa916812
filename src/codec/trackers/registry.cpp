#include "codec/trackers/gl200/gl200.h"
#include "codec/trackers/gps103/gps103.h"
#include "codec/trackers/gt06/gt06.h"
#include "codec/trackers/h02/h02.h"
#include "codec/trackers/meitrack/meitrack.h"
#include "codec/trackers/protocol.h"
#include "codec/trackers/ruptela/ruptela.h"
#include "codec/trackers/teltonika/teltonika.h"
#include "codec/trackers/tk103/tk103.h"

namespace tern::codec::trackers {

// Adding a protocol: one folder beside this file, and one line here.
const std::vector<ProtocolInfo>& protocols() {
  static const std::vector<ProtocolInfo> kProtocols = {
      {"gt06", 5023, 64 * 1024, 600, &createGt06Codec},
      {"teltonika", 5027, 64 * 1024, 600, &createTeltonikaCodec},
      {"h02", 5013, 8 * 1024, 600, &createH02Codec},
      {"tk103", 5002, 8 * 1024, 600, &createTk103Codec},
      {"gps103", 5001, 8 * 1024, 600, &createGps103Codec},
      {"gl200", 5004, 16 * 1024, 600, &createGl200Codec},
      {"meitrack", 5020, 64 * 1024, 600, &createMeitrackCodec},
      {"ruptela", 5046, 64 * 1024, 600, &createRuptelaCodec},
  };
  return kProtocols;
}

const ProtocolInfo* findProtocol(std::string_view name) {
  for (const auto& info : protocols()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

}  // namespace tern::codec::trackers
