#pragma once
// Internal interface of the Queclink GL200-family codec (gl200.cpp): the text and binary message
// decoders and the model table. Not part of the public tracker API.
#include <string>
#include <string_view>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers::gl200 {

inline constexpr std::string_view kProtocolName = "gl200";

// One text message ("+RESP:GTFRI,...$"); a trailing '$' or NUL terminator is ignored.
DecodeResult decodeText(std::string_view frame, SessionState& session);

// One binary message ("+RSP", "+EVT", "+INF", ... or the newer '+' 0x00 format).
DecodeResult decodeBinary(std::string_view frame, SessionState& session);

// The device model: session.extra "model" when configured (upper-cased), else the one the
// protocol version's prefix names (e.g. "06..." → GV300), else "".
std::string deviceModel(const SessionState& session, std::string_view protocolVersion);

}  // namespace tern::codec::trackers::gl200
