#pragma once
// The shape of a tracker protocol: a frame splitter, a message decoder that turns one frame into
// positions plus the exact bytes to answer, and (optionally) a command encoder. Pure code: no
// sockets, no clocks (the caller passes the time), so it is tested byte by byte and fuzzed.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/trackers/position.h"

namespace tern::codec::trackers {

enum class FrameStatus : std::uint8_t {
  kOk,        // a frame of `size` bytes is at the front of the buffer
  kNeedMore,  // read more bytes and call again
  kSkip,      // `size` leading bytes cannot start a frame: drop them and call again (resync)
  kTooLarge,  // the frame at the front is larger than the protocol's maximum: close
};

struct FrameResult {
  FrameStatus status = FrameStatus::kNeedMore;
  std::size_t size = 0;
};

// What the server knows about the device on one connection.
struct SessionState {
  std::string deviceId;  // empty until the device identified itself
  // Offset of the device's clock from UTC in seconds, for protocols that send local time
  // (GT06 login time-zone word, GPS103 local vs UTC). Learnt by the decoder.
  std::optional<std::int32_t> timeZoneOffsetSeconds;
  // Protocol-specific state the decoder keeps between frames (e.g. a Teltonika codec, an H02
  // binary flag). Small key/value pairs.
  std::vector<std::pair<std::string, std::string>> extra;
  // Asked when a device announces an id: true to accept it (known, or auto-registration on).
  // Unset means accept.
  std::function<bool(const std::string& deviceId)> accept;

  bool identified() const { return !deviceId.empty(); }
  // Tries to identify the session: sets deviceId when accepted. Returns the decision.
  bool identify(const std::string& id);
  const std::string* getExtra(std::string_view key) const;
  void setExtra(std::string_view key, std::string value);
};

// A device's answer to a downlink command.
struct CommandAnswer {
  std::string text;  // the answer as text (hex for binary answers)
};

struct DecodeResult {
  std::vector<Position> positions;
  // Bytes to send back, byte for byte; sent only after `positions` are committed.
  std::string response;
  std::optional<CommandAnswer> commandAnswer;
  bool badChecksum = false;  // decoded anyway, counted in metrics
  bool badLength = false;    // an inconsistent length field, decoded anyway
  bool close = false;        // the protocol wants the connection closed after the response
  // Why a frame yielded nothing useful (for logs/metrics): "not identified", "unknown type", ...
  const char* note = nullptr;
};

// Downlink command types common to all protocols.
enum class CommandType : std::uint8_t {
  kEngineStop,
  kEngineResume,
  kPositionSingle,
  kCustom,     // `text` sent as the protocol's free-text command
  kCustomHex,  // `text` is hex of the raw bytes to send
};

struct Command {
  CommandType type = CommandType::kCustom;
  std::string text;
  std::uint32_t index = 1;  // a sequence number for protocols that carry one
};

// One instance per connection: framing may keep state between calls.
class ProtocolCodec {
 public:
  virtual ~ProtocolCodec() = default;
  virtual FrameResult splitFrame(std::string_view buffer) = 0;
  // `serverTimeUs` is "now" for time-dependent answers (e.g. a GT06 time request).
  virtual DecodeResult decode(std::string_view frame, SessionState& session,
                              std::int64_t serverTimeUs) = 0;
  // The bytes for a downlink command, or nullopt when this protocol cannot express it.
  virtual std::optional<std::string> encodeCommand(const Command& command,
                                                   const SessionState& session) {
    (void)command;
    (void)session;
    return std::nullopt;
  }
};

struct ProtocolInfo {
  std::string_view name;
  std::uint16_t defaultPort = 0;
  std::size_t maxFrameSize = 0;            // bytes buffered before kTooLarge at the latest
  std::uint32_t idleTimeoutSeconds = 600;  // close a connection silent this long
  std::unique_ptr<ProtocolCodec> (*create)() = nullptr;
};

// Every protocol Tern speaks over TCP (registry.cpp; one line per protocol).
const std::vector<ProtocolInfo>& protocols();
const ProtocolInfo* findProtocol(std::string_view name);

}  // namespace tern::codec::trackers
