#pragma once
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createGt06Codec();

}  // namespace tern::codec::trackers
