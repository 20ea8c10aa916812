// Queclink GL200 family (GL200/GL300/GL500, GV55/GV200/GV300/GV350/GV500/GV600, GMT100, ...):
// "$"-terminated text messages and length-prefixed binary messages on the same connection.
// Every message carries the IMEI, so there is no login; the only answer the server owes is the
// heartbeat acknowledgement "+SACK:GTHBD,<protocol version>,<count>$".
#include "codec/trackers/gl200/gl200.h"

#include <algorithm>
#include <cstdio>

#include "codec/trackers/gl200/gl200_decoders.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

// Smallest binary message the length field may announce (the header alone is longer).
constexpr std::size_t kMinimumBinary = 11;
// Used only if the registry has no entry (it always has: registry.cpp).
constexpr std::size_t kDefaultMaxFrameSize = 16 * 1024;

enum class Kind : std::uint8_t { kText, kBinary, kNotAFrame, kNeedMore };

struct Layout {
  Kind kind = Kind::kText;
  std::size_t lengthOffset = 0;  // binary: where the length field is
  std::size_t lengthWidth = 0;   // 1 or 2 bytes, big-endian
};

// What the bytes at the front are, from at most the first few bytes.
Layout classify(std::string_view buf) {
  if (buf.empty()) return {Kind::kNeedMore};
  if (buf[0] != '+') return {Kind::kNotAFrame};
  if (buf.size() < 2) return {Kind::kNeedMore};
  if (buf[1] == '\0') return {Kind::kBinary, 2, 2};  // the newer binary format
  // The binary headers are four characters; "+ACK" is binary unless a ':' follows.
  std::string_view header = buf.substr(0, 4);
  struct Binary {
    std::string_view header;
    std::size_t offset;
    std::size_t width;
  };
  static constexpr Binary kBinary[] = {
      {"+RSP", 9, 2}, {"+BSP", 9, 2}, {"+EVT", 9, 2}, {"+BVT", 9, 2}, {"+INF", 7, 2},
      {"+BNF", 7, 2}, {"+HBD", 5, 1}, {"+CRD", 6, 2}, {"+BRD", 6, 2}, {"+LGN", 6, 2},
  };
  if (header.size() == 4) {
    if (header == "+ACK") {
      if (buf.size() < 5) return {Kind::kNeedMore};
      if (buf[4] != ':') return {Kind::kBinary, 6, 1};
    }
    for (const auto& b : kBinary) {
      if (b.header == header) return {Kind::kBinary, b.offset, b.width};
    }
  }
  // Text starts "+<LETTERS>:" ("+RESP:", "+BUFF:", "+ACK:"); anything else is not a frame start.
  std::size_t i = 1;
  while (i < buf.size() && i <= 8 && buf[i] >= 'A' && buf[i] <= 'Z') ++i;
  if (i == buf.size()) return {Kind::kNeedMore};
  if (buf[i] == ':' && i >= 2) return {Kind::kText};
  return {Kind::kNotAFrame};
}

class Gl200Codec : public ProtocolCodec {
 public:
  Gl200Codec() {
    const ProtocolInfo* info = findProtocol(gl200::kProtocolName);
    maxFrameSize_ =
        info != nullptr && info->maxFrameSize > 0 ? info->maxFrameSize : kDefaultMaxFrameSize;
  }

  FrameResult splitFrame(std::string_view buf) override {
    Layout layout = classify(buf);
    switch (layout.kind) {
      case Kind::kNeedMore:
        return {FrameStatus::kNeedMore, 0};
      case Kind::kNotAFrame: {
        // Resynchronise on the next '+', where every message starts.
        std::size_t next = buf.find('+', 1);
        return {FrameStatus::kSkip, next == std::string_view::npos ? buf.size() : next};
      }
      case Kind::kBinary: {
        if (buf.size() < layout.lengthOffset + layout.lengthWidth)
          return {FrameStatus::kNeedMore, 0};
        std::size_t length = static_cast<std::uint8_t>(buf[layout.lengthOffset]);
        if (layout.lengthWidth == 2) {
          length = (length << 8) | static_cast<std::uint8_t>(buf[layout.lengthOffset + 1]);
        }
        if (length < std::max(kMinimumBinary, layout.lengthOffset + layout.lengthWidth)) {
          return {FrameStatus::kSkip, 1};  // a length that cannot be: not a real header
        }
        if (length > maxFrameSize_) return {FrameStatus::kTooLarge, 0};
        if (buf.size() < length) return {FrameStatus::kNeedMore, 0};
        return {FrameStatus::kOk, length};
      }
      case Kind::kText:
        break;
    }
    // Text ends at '$' (some firmware ends with NUL); the terminator belongs to the frame.
    std::size_t end = buf.find_first_of(std::string_view("$\0", 2), 1);
    if (end != std::string_view::npos) {
      if (end + 1 > maxFrameSize_) return {FrameStatus::kTooLarge, 0};
      return {FrameStatus::kOk, end + 1};
    }
    if (buf.size() >= maxFrameSize_) return {FrameStatus::kTooLarge, 0};
    return {FrameStatus::kNeedMore, 0};
  }

  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override {
    (void)serverTimeUs;  // no answer depends on the time
    if (classify(frame).kind == Kind::kBinary) return gl200::decodeBinary(frame, session);
    return gl200::decodeText(frame, session);
  }

  // Queclink "AT+GT" commands: <password> (session extra "password", default "gl200", the
  // factory password) and a 4-hex-digit serial number (Command::index) that the device echoes in
  // its "+ACK:GT...". Engine stop/resume drive output 1 through GTOUT; a position request is
  // GTRTO sub-command 1 (RTL), answered by "+ACK:GTRTO" and a "+RESP:GTRTL" position.
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override {
    const std::string* configured = session.getExtra("password");
    std::string password = configured != nullptr ? *configured : "gl200";
    char serial[8];
    std::snprintf(serial, sizeof(serial), "%04X", static_cast<unsigned>(command.index & 0xFFFF));
    switch (command.type) {
      case CommandType::kEngineStop:
        return "AT+GTOUT=" + password + ",1,,,,,,0,,,,,,," + serial + "$";
      case CommandType::kEngineResume:
        return "AT+GTOUT=" + password + ",0,,,,,,0,,,,,,," + serial + "$";
      case CommandType::kPositionSingle:
        return "AT+GTRTO=" + password + ",1,,,,,," + serial + "$";
      case CommandType::kCustom:
        // Sent as given: the caller writes the whole "AT+GT...$" command.
        if (command.text.empty()) return std::nullopt;
        return command.text;
      case CommandType::kCustomHex: {
        auto bytes = fromHex(command.text);
        if (!bytes || bytes->empty()) return std::nullopt;
        return bytes;
      }
    }
    return std::nullopt;
  }

 private:
  std::size_t maxFrameSize_;  // a frame that would exceed it is refused rather than buffered
};

}  // namespace

std::unique_ptr<ProtocolCodec> createGl200Codec() {
  return std::make_unique<Gl200Codec>();
}

}  // namespace tern::codec::trackers
