#pragma once
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createTeltonikaCodec();

}  // namespace tern::codec::trackers
