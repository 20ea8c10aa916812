// PLACEHOLDER: the gps103 decoder is being written; until then it frames nothing.
#include "codec/trackers/gps103/gps103.h"

namespace tern::codec::trackers {

namespace {
class PendingCodec : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override {
    return {buffer.empty() ? FrameStatus::kNeedMore : FrameStatus::kSkip, buffer.size()};
  }
  DecodeResult decode(std::string_view, SessionState&, std::int64_t) override { return {}; }
};
}  // namespace

std::unique_ptr<ProtocolCodec> createGps103Codec() { return std::make_unique<PendingCodec>(); }

}  // namespace tern::codec::trackers
