// PLACEHOLDER: the gl200 decoder is being written; until then it frames nothing.
#include "codec/trackers/gl200/gl200.h"

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

std::unique_ptr<ProtocolCodec> createGl200Codec() { return std::make_unique<PendingCodec>(); }

}  // namespace tern::codec::trackers
