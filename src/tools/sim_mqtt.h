#pragma once
// `tern sim mqtt`: the reference deployment's device emulator. N devices, each with its own UUID
// and MQTT connection, publish {"uuid":"<uuid>","value":<20..30>} to device/<uuid>.
#include <cstdint>
#include <string>

namespace tern::tools {

struct SimMqttOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 1883;
  unsigned devices = 1;
  double rateSeconds = 1.0;  // interval between one device's messages; fractions allowed
  std::uint8_t qos = 0;
  double durationSeconds = 0;  // 0: no time limit (then count must be set)
  std::uint64_t count = 0;     // messages per device; 0: no count limit
  std::string topicPrefix = "device/";
  unsigned threads = 1;  // event loops used by the simulator
};

struct SimMqttResult {
  std::uint64_t sent = 0;    // PUBLISH packets written
  std::uint64_t acked = 0;   // QoS 1: PUBACK received; QoS 2: PUBCOMP received; QoS 0: = sent
  std::uint64_t errors = 0;  // failed connects, protocol errors, lost connections
  std::uint64_t reconnects = 0;
};

// Runs until every device has sent `count` messages and has them acknowledged (or the duration
// elapses), then disconnects cleanly. Devices fire jittered so they do not publish in lockstep;
// a lost connection reconnects with exponential backoff (100 ms .. 5 s) and unacknowledged
// messages are resent with DUP set.
SimMqttResult runSimMqtt(const SimMqttOptions& options);

// "sent=N acked=N errors=N reconnects=N elapsed=S rate=R/s" on one line.
std::string formatSimSummary(const SimMqttResult& result, double elapsedSeconds);

}  // namespace tern::tools
