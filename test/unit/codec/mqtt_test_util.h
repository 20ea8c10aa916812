#pragma once
// Helpers shared by the MQTT codec tests: building raw packets by hand and decoding them.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "codec/mqtt/codec.h"

namespace tern::codec::mqtt::testing {

inline constexpr std::uint32_t kNoLimit = std::numeric_limits<std::uint32_t>::max();

// Remaining-length varint, written independently of the codec so tests check it.
inline std::string varint(std::size_t value) {
  std::string out;
  do {
    auto byte = static_cast<unsigned char>(value % 128);
    value /= 128;
    if (value != 0) byte = static_cast<unsigned char>(byte | 0x80);
    out.push_back(static_cast<char>(byte));
  } while (value != 0);
  return out;
}

// A whole packet from a header byte and a body, with a correct remaining length.
inline std::string raw(std::uint8_t header, std::string_view body) {
  std::string out(1, static_cast<char>(header));
  out += varint(body.size());
  out.append(body);
  return out;
}

// A 2-byte-length-prefixed field.
inline std::string str(std::string_view s) {
  std::string out;
  out.push_back(static_cast<char>(s.size() >> 8));
  out.push_back(static_cast<char>(s.size() & 0xFF));
  out.append(s);
  return out;
}

inline std::string u16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

struct Decoded {
  DecodeStatus status = DecodeStatus::kNeedMore;
  const char* error = nullptr;
  Packet packet;
};

// Splits and parses the first packet of `bytes`; reports the first failing stage.
inline Decoded decodeOne(std::string_view bytes, std::uint32_t maxPacketSize = kNoLimit) {
  Decoded d;
  const Frame frame = splitFrame(bytes, maxPacketSize);
  if (frame.status != DecodeStatus::kOk) {
    d.status = frame.status;
    d.error = frame.error;
    return d;
  }
  const ParseResult result = parsePacket(frame.header, frame.body, d.packet);
  d.status = result.status;
  d.error = result.error;
  return d;
}

inline std::string encoded(const Packet& packet) {
  std::string out;
  encode(packet, out);
  return out;
}

}  // namespace tern::codec::mqtt::testing
