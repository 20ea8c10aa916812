// GT06 / Concox framing, server packets and downlink commands. Message decoding lives in
// gt06_decoder.cpp.
#include "codec/trackers/gt06/gt06.h"

#include <algorithm>

#include "codec/trackers/gt06/gt06_internal.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace gt06 {

namespace {

std::uint8_t byteAt(std::string_view data, std::size_t i) {
  return static_cast<std::uint8_t>(data[i]);
}

// True when a frame could start at `i`: 78 78 or 79 79 (a lone 78/79 at the end may still be).
bool couldStart(std::string_view b, std::size_t i) {
  const std::uint8_t c = byteAt(b, i);
  if (c != kShortStart && c != kLongStart) return false;
  return i + 1 >= b.size() || byteAt(b, i + 1) == c;
}

bool startsFrame(std::string_view b, std::size_t i) {
  return i + 1 < b.size() && byteAt(b, i) == byteAt(b, i + 1) &&
         (byteAt(b, i) == kShortStart || byteAt(b, i) == kLongStart);
}

bool isCrLf(std::string_view b, std::size_t i) {
  return i + 1 < b.size() && b[i] == '\r' && b[i + 1] == '\n';
}

// A candidate frame ending in 0D 0A whose CRC matches is complete whatever its LEN says.
bool crcMatches(std::string_view frame) {
  if (frame.size() < 10) return false;
  const std::size_t crcAt = frame.size() - 4;
  const auto stored =
      static_cast<std::uint16_t>((byteAt(frame, crcAt) << 8) | byteAt(frame, crcAt + 1));
  return crc16X25(frame.substr(2, crcAt - 2)) == stored;
}

FrameResult needMore(std::size_t buffered) {
  if (buffered >= kMaxFrameSize) return {FrameStatus::kTooLarge, 0};
  return {FrameStatus::kNeedMore, 0};
}

FrameResult cut(std::size_t size) {
  if (size > kMaxFrameSize) return {FrameStatus::kTooLarge, 0};
  return {FrameStatus::kOk, size};
}

}  // namespace

FrameResult splitFrame(std::string_view b) {
  if (b.empty()) return {FrameStatus::kNeedMore, 0};
  if (!couldStart(b, 0)) {
    // Resync: drop everything up to the next plausible start bits.
    std::size_t i = 1;
    while (i < b.size() && !couldStart(b, i)) ++i;
    return {FrameStatus::kSkip, i};
  }
  // Like Traccar's frame decoder: nothing is decided before 5 bytes.
  if (b.size() < 5) return {FrameStatus::kNeedMore, 0};

  const bool extended = byteAt(b, 0) == kLongStart;
  const std::size_t declared = extended ? 6 + ((std::size_t{byteAt(b, 2)} << 8) | byteAt(b, 3))
                                        : 5 + std::size_t{byteAt(b, 2)};
  if (b.size() >= declared && isCrLf(b, declared - 2)) return cut(declared);

  // Many devices send a wrong LEN (0 for Wi-Fi lists, or a constant): then the frame ends at the
  // first 0D 0A, as in Traccar. While fewer bytes than LEN promises are buffered, a 0D 0A may
  // instead be data of a frame still arriving, so it only ends the frame when another frame
  // starts right after it, or when nothing follows and the frame checks out (CRC) or is a login
  // (the device waits for the login ACK, and the BCD IMEI cannot contain 0D).
  const bool lenReached = b.size() >= declared;
  for (std::size_t p = 2; p + 1 < b.size(); ++p) {
    if (!isCrLf(b, p)) continue;
    const std::size_t end = p + 2;
    if (lenReached) return cut(end);
    if (end + 2 <= b.size()) {
      if (startsFrame(b, end)) return cut(end);
      continue;
    }
    if (end + 1 == b.size()) {
      if (couldStart(b, end)) return needMore(b.size());  // one more byte decides
      continue;
    }
    const bool login = !extended && byteAt(b, 3) == kMsgLogin;
    if (login || crcMatches(b.substr(0, end))) return cut(end);
    break;
  }
  return needMore(b.size());
}

std::string buildPacket(bool extended, std::uint8_t type, std::string_view content,
                        std::uint16_t serial) {
  const std::size_t length = 5 + content.size();  // type + content + serial + CRC
  std::string out;
  out.reserve(length + 6);
  if (extended) {
    out.append({static_cast<char>(kLongStart), static_cast<char>(kLongStart)});
    out.push_back(static_cast<char>((length >> 8) & 0xFF));
  } else {
    out.append({static_cast<char>(kShortStart), static_cast<char>(kShortStart)});
  }
  out.push_back(static_cast<char>(length & 0xFF));
  out.push_back(static_cast<char>(type));
  out.append(content);
  out.push_back(static_cast<char>(serial >> 8));
  out.push_back(static_cast<char>(serial & 0xFF));
  const std::uint16_t crc = crc16X25(std::string_view(out).substr(2));
  out.push_back(static_cast<char>(crc >> 8));
  out.push_back(static_cast<char>(crc & 0xFF));
  out.append("\r\n");
  return out;
}

namespace {

bool extraIsTrue(const SessionState& session, std::string_view key) {
  const std::string* value = session.getExtra(key);
  return value != nullptr && (*value == "true" || *value == "1");
}

// Text commands travel in a 0x80 packet: command length, 4-byte server flag, ASCII text,
// [language word], serial. The LEN byte bounds the text to what fits one short packet.
std::optional<std::string> textCommand(std::string_view text, const SessionState& session,
                                       std::uint32_t index) {
  const bool language = extraIsTrue(session, "language");
  const std::size_t overhead = 1 + 4 + (language ? 2 : 0);
  if (text.empty() || 5 + overhead + text.size() > 0xFF) return std::nullopt;
  std::string content;
  content.push_back(static_cast<char>(4 + text.size()));
  content.append(4, '\0');  // server flag
  content.append(text);
  if (language) content.append({'\0', '\x02'});  // English
  return buildPacket(false, kMsgCommand0, content, static_cast<std::uint16_t>(index & 0xFFFF));
}

}  // namespace

std::optional<std::string> encodeCommand(const Command& command, const SessionState& session) {
  // "alternative" devices cut the fuel line with DYD/HFYD and a password instead of Relay.
  const bool alternative = extraIsTrue(session, "alternative");
  const std::string* password = session.getExtra("password");
  const std::string secret = password != nullptr ? *password : "123456";
  switch (command.type) {
    case CommandType::kEngineStop:
      return textCommand(alternative ? "DYD," + secret + "#" : "Relay,1#", session, command.index);
    case CommandType::kEngineResume:
      return textCommand(alternative ? "HFYD," + secret + "#" : "Relay,0#", session, command.index);
    case CommandType::kPositionSingle:
      // The device answers with a "Current position!..." string message.
      return textCommand("WHERE#", session, command.index);
    case CommandType::kCustom:
      return textCommand(command.text, session, command.index);
    case CommandType::kCustomHex: {
      auto raw = fromHex(command.text);
      if (!raw || raw->empty()) return std::nullopt;
      return raw;
    }
  }
  return std::nullopt;
}

}  // namespace gt06

namespace {

class Gt06Codec : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override { return gt06::splitFrame(buffer); }
  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override {
    return gt06::decodeFrame(frame, session, serverTimeUs);
  }
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override {
    return gt06::encodeCommand(command, session);
  }
};

}  // namespace

std::unique_ptr<ProtocolCodec> createGt06Codec() {
  return std::make_unique<Gt06Codec>();
}

}  // namespace tern::codec::trackers
