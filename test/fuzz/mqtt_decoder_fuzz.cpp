// libFuzzer target for the MQTT 3.1.1 and 5.0 decoder. Frames and parses the input as a byte
// stream the way a connection would (3.1.1 until a CONNECT says level 5), parses every frame
// under both versions so MQTT 5 properties and reason codes are reached from any seed, and checks
// that every accepted packet survives encode → parse unchanged and that encoding is canonical.
// Any violation aborts so libFuzzer records it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "codec/mqtt/codec.h"

namespace {

using namespace tern::codec::mqtt;

constexpr std::uint32_t kMaxPacketSize = 64 * 1024;
// Re-encoded packets can exceed the input limit (e.g. a non-minimal length encoding shrinks),
// so the check pass uses no limit.
constexpr std::uint32_t kNoLimit = 0xFFFF'FFFF;

[[noreturn]] void fail(const char* what, const std::string& bytes) {
  std::fprintf(stderr, "mqtt_decoder_fuzz: %s (re-encoded %zu bytes)\n", what, bytes.size());
  std::abort();
}

void checkRoundTrip(const Packet& packet, ProtocolVersion version) {
  std::string bytes;
  encode(packet, bytes, version);
  const Frame frame = splitFrame(bytes, kNoLimit);
  if (frame.status != DecodeStatus::kOk) fail("re-encoded packet does not frame", bytes);
  if (frame.size != bytes.size()) fail("re-encoded frame size differs", bytes);
  Packet again;
  const ParseResult result = parsePacket(frame.header, frame.body, again, version);
  if (result.status != DecodeStatus::kOk) fail(result.error, bytes);
  if (!(again == packet)) fail("re-parsed packet differs", bytes);
  if (packetType(again) != packetType(packet)) fail("packet type differs", bytes);
  std::string twice;
  encode(again, twice, version);
  if (twice != bytes) fail("encoding is not canonical", bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  ProtocolVersion current = ProtocolVersion::kV311;
  while (!input.empty()) {
    const Frame frame = splitFrame(input, kMaxPacketSize);
    if (frame.status == DecodeStatus::kNeedMore) break;
    if (frame.status != DecodeStatus::kOk) {
      if (frame.error == nullptr) fail("rejected frame without an error text", {});
      break;  // a connection would be closed here
    }
    if (frame.size == 0 || frame.size > input.size()) fail("frame size out of range", {});
    bool currentOk = false;
    for (const ProtocolVersion version : {ProtocolVersion::kV311, ProtocolVersion::kV5}) {
      Packet packet;
      const ParseResult result = parsePacket(frame.header, frame.body, packet, version);
      if (result.status == DecodeStatus::kOk) {
        checkRoundTrip(packet, version);
        if (version == current) {
          currentOk = true;
          if (const auto* connect = std::get_if<Connect>(&packet); connect != nullptr) {
            if (connect->protocolLevel == 5) current = ProtocolVersion::kV5;
          }
        }
      } else if (result.status != DecodeStatus::kMalformed || result.error == nullptr) {
        fail("parse failed without kMalformed and an error text", {});
      } else if (result.reasonCode != 0x81 && result.reasonCode != 0x82) {
        fail("parse failed with a reason code other than 0x81/0x82", {});
      }
    }
    if (!currentOk) break;  // a connection would be closed here
    input.remove_prefix(frame.size);
  }
  return 0;
}
