#pragma once
#include <cstddef>
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createH02Codec();

// H02 '$' frames carry no length and no delimiter; a device always sends one size (32 or 45
// bytes, some 42/46/48). `binaryLength` fixes that size for the connection (Traccar's
// h02.messageLength); 0 lets the codec find it from the stream.
std::unique_ptr<ProtocolCodec> createH02CodecWithLength(std::size_t binaryLength);

}  // namespace tern::codec::trackers
