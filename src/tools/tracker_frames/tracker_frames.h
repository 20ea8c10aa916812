#pragma once
// The device side of the nine tracker protocols `tern sim tracker` speaks: login, position and
// heartbeat frames built from a fix, each with the exact answer the server owes for it. The
// answers are derived from the protocol notes (/work/shared/protocols), never from Tern's own
// decoders, so the simulator is an independent check of the server.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::tools {

// One simulated GPS fix and the vehicle state that goes with it.
struct DeviceFix {
  std::int64_t timeUs = 0;  // UTC; protocols carry whole seconds (Teltonika: ms)
  double latitude = 0;      // degrees, south negative
  double longitude = 0;     // degrees, west negative
  double altitude = 0;      // m
  double speedKmh = 0;
  double course = 0;  // degrees 0..359
  int satellites = 8;
  bool valid = true;
  bool ignition = false;
  std::uint64_t odometerM = 0;
};

enum class AckKind : std::uint8_t {
  kNone,         // the server must not answer this frame
  kExact,        // exactly `bytes`
  kTimeStamped,  // `bytes` + yyyyMMddHHmmss (server UTC, close to ours) + `suffix` (H02 V1)
  kHttpOk,       // one HTTP/1.1 response with status 200 (OsmAnd)
};

struct ExpectedAck {
  AckKind kind = AckKind::kNone;
  std::string bytes;   // kExact: the whole answer; kTimeStamped: what comes before the time
  std::string suffix;  // kTimeStamped: what follows the time
};

enum class FrameKind : std::uint8_t { kLogin, kPosition, kHeartbeat };

struct TrackerFrame {
  FrameKind kind = FrameKind::kPosition;
  std::string bytes;
  ExpectedAck ack;
  // Records the server stores for this frame: 1 for a position, 1 for heartbeats that carry
  // device status (GT06 0x13), else 0.
  unsigned records = 0;
};

enum class AckMatch : std::uint8_t { kNeedMore, kMatch, kMismatch };

// Checks the front of `received` against `expected` (not kNone). On kMatch `consumed` is the
// answer's size; on kMismatch the caller should drop the connection (the stream is out of step).
// `nowUs` is our UTC clock, for answers that carry the server's time.
AckMatch matchAck(const ExpectedAck& expected, std::string_view received, std::int64_t nowUs,
                  std::size_t& consumed);

// One device's frame builder; keeps per-device state such as serial numbers.
class TrackerDeviceEncoder {
 public:
  virtual ~TrackerDeviceEncoder() = default;
  // The frame a device sends first on every connection; nullopt when the protocol has none
  // (every frame carries the id).
  virtual std::optional<TrackerFrame> login() = 0;
  virtual TrackerFrame position(const DeviceFix& fix) = 0;
  // nullopt when the protocol has no heartbeat.
  virtual std::optional<TrackerFrame> heartbeat() = 0;
  // The id the server stores positions under.
  virtual const std::string& deviceId() const = 0;
};

// gt06, teltonika, h02, tk103, gps103, gl200, meitrack, ruptela, osmand.
const std::vector<std::string_view>& simTrackerProtocols();
// The protocol's usual port (osmand 5055); 0 for an unknown name.
std::uint16_t trackerDefaultPort(std::string_view protocol);
// nullptr for an unknown protocol. `imei` is a 15-digit number; protocols with shorter ids
// (TK103: 12 characters) use its last digits.
std::unique_ptr<TrackerDeviceEncoder> makeTrackerEncoder(std::string_view protocol,
                                                         std::uint64_t imei);

// "yyyyMMddHHmmss" of a UTC time, and the civil fields of one (for the encoders).
struct CivilTime {
  int year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0;
};
CivilTime civilFromMicros(std::int64_t timeUs);

}  // namespace tern::tools
