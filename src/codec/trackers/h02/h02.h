#pragma once
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createH02Codec();

}  // namespace tern::codec::trackers
