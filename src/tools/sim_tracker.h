#pragma once
// `tern sim tracker`: fleets of GPS trackers in one of the nine tracker protocols. Each device
// logs in, drives a plausible route (speed, course, odometer, ignition), sends heartbeats,
// checks every answer against the one the protocol prescribes, and reconnects when its
// connection is lost.
#include <cstdint>
#include <string>

namespace tern::tools {

struct SimTrackerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: the protocol's usual port
  std::string protocol = "gt06";
  unsigned devices = 1;
  // Seconds between one device's positions; 0 = the next one as soon as the previous one is
  // acknowledged (protocols that do not acknowledge positions are paced at kUnackedPacing).
  double rateSeconds = 1.0;
  double durationSeconds = 0;                // 0: no time limit (then count must be set)
  std::uint64_t count = 0;                   // positions per device; 0: no count limit
  unsigned threads = 1;                      // event loops used by the simulator
  std::uint64_t imeiBase = 860000000000000;  // device i has IMEI imeiBase + i
  unsigned heartbeatEvery = 10;              // a heartbeat after every this many positions; 0: none
};

struct SimTrackerResult {
  std::uint64_t sent = 0;     // distinct positions sent (a resend after a reconnect is not counted)
  std::uint64_t records = 0;  // records the server should store (positions + status heartbeats)
  std::uint64_t ackExpected = 0;    // frames (logins, positions, heartbeats) owed an answer
  std::uint64_t acked = 0;          // of those, answered exactly as expected
  std::uint64_t ackMismatches = 0;  // wrong, unexpected or missing (timed-out) answers
  std::uint64_t ackTimeouts = 0;    // of the mismatches, answers that never came
  std::uint64_t errors = 0;         // failed connects and lost connections
  std::uint64_t reconnects = 0;
  std::uint64_t logins = 0;
  std::uint64_t heartbeats = 0;
  double ackLatencyP50Ms = 0;  // from writing a frame to its answer
  double ackLatencyP99Ms = 0;
  double ackLatencyMaxMs = 0;
};

// Runs until every device has sent `count` positions and has them acknowledged (or the
// duration elapses, then waits a grace period for outstanding answers), then disconnects.
// Throws std::invalid_argument for an unknown protocol or bad options, std::runtime_error when the
// host cannot be resolved.
SimTrackerResult runSimTracker(const SimTrackerOptions& options);

// "positions=N records=N ack_expected=N acked=N mismatches=N (timeouts=N) errors=N
// reconnects=N heartbeats=N elapsed=S rate=R/s ack_p50=Xms ack_p99=Yms" on one line.
std::string formatSimTrackerSummary(const SimTrackerResult& result, double elapsedSeconds);

// Exit status: 0 when nothing mismatched, nothing failed, and every owed answer arrived.
bool simTrackerSucceeded(const SimTrackerResult& result);

}  // namespace tern::tools
