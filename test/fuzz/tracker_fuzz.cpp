// libFuzzer target for one tracker protocol (TERN_FUZZ_PROTOCOL): frames the input as a stream,
// decodes every frame with a session that accepts any device, and encodes each command type.
// Any crash, sanitizer report or broken framing contract is a finding.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "codec/trackers/protocol.h"

namespace trk = tern::codec::trackers;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const trk::ProtocolInfo* info = trk::findProtocol(TERN_FUZZ_PROTOCOL);
  if (info == nullptr) std::abort();
  auto codec = info->create();
  trk::SessionState session;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t offset = 0;
  for (int guard = 0; offset < input.size() && guard < 100000; ++guard) {
    trk::FrameResult frame = codec->splitFrame(input.substr(offset));
    if (frame.status == trk::FrameStatus::kNeedMore ||
        frame.status == trk::FrameStatus::kTooLarge) {
      break;
    }
    // A frame or a skip must make progress and stay inside the buffer.
    if (frame.size == 0 || frame.size > input.size() - offset) std::abort();
    if (frame.status == trk::FrameStatus::kOk) {
      trk::DecodeResult result =
          codec->decode(input.substr(offset, frame.size), session, 1'700'000'000'000'000);
      for (const auto& p : result.positions) {
        if (p.hasLocation && (p.latitude < -90.0001 || p.latitude > 90.0001 ||
                              p.longitude < -180.0001 || p.longitude > 180.0001)) {
          // Coordinates out of range must never leave a decoder (it should drop or clamp).
          std::abort();
        }
      }
    }
    offset += frame.size;
  }
  for (auto type : {trk::CommandType::kEngineStop, trk::CommandType::kEngineResume,
                    trk::CommandType::kPositionSingle, trk::CommandType::kCustom,
                    trk::CommandType::kCustomHex}) {
    trk::Command command{type, std::string(input.substr(0, 32)), 1};
    (void)codec->encodeCommand(command, session);
  }
  return 0;
}
