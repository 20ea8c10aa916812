#pragma once
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createRuptelaCodec();

}  // namespace tern::codec::trackers
