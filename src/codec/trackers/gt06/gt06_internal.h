#pragma once
// Pieces of the GT06 codec shared between its translation units (framing, decoding, commands).
// Not part of the public codec interface.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers::gt06 {

// Same bound as the registry's maxFrameSize for gt06.
inline constexpr std::size_t kMaxFrameSize = 64 * 1024;

inline constexpr std::uint8_t kShortStart = 0x78;  // 78 78 LEN(1) ...
inline constexpr std::uint8_t kLongStart = 0x79;   // 79 79 LEN(2) ...

// Message types that need special handling outside the decoder.
inline constexpr std::uint8_t kMsgLogin = 0x01;
inline constexpr std::uint8_t kMsgCommand0 = 0x80;

FrameResult splitFrame(std::string_view buffer);

DecodeResult decodeFrame(std::string_view frame, SessionState& session, std::int64_t serverTimeUs);

std::optional<std::string> encodeCommand(const Command& command, const SessionState& session);

// A server packet: start bits, LEN, type, content, serial, CRC-16/X-25, 0D 0A. `extended` picks
// the 79 79 form with a two-byte LEN.
std::string buildPacket(bool extended, std::uint8_t type, std::string_view content,
                        std::uint16_t serial);

}  // namespace tern::codec::trackers::gt06
