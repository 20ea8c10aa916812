#pragma once
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createGl200Codec();

}  // namespace tern::codec::trackers
