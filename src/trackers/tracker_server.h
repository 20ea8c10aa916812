#pragma once
// The tracker gateway: one TCP listener per enabled protocol, a device session per connection,
// positions through the durable ingest path (the ACK that confirms a position goes out only after
// it is committed), and downlink commands queued per device.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "codec/trackers/protocol.h"
#include "core/config.h"
#include "net/event_loop_pool.h"
#include "net/tcp_listener.h"

namespace tern::ingest {
class Pipeline;
}

namespace tern::trackers {

class TrackerConnection;

struct TrackerStats {
  std::uint64_t connections = 0;  // open now
  std::uint64_t frames = 0;
  std::uint64_t positions = 0;
  std::uint64_t badChecksums = 0;
  std::uint64_t badLengths = 0;
  std::uint64_t skippedBytes = 0;  // bytes dropped while resynchronising
  std::uint64_t refusedDevices = 0;
  std::uint64_t closedOversize = 0;
};

enum class CommandStatus { kQueued, kSent, kAnswered, kUnsupported, kFailed };
const char* commandStatusName(CommandStatus status);

struct CommandRecord {
  std::uint64_t id = 0;
  std::string deviceId;
  codec::trackers::Command command;
  std::string typeName;  // as given to the API
  CommandStatus status = CommandStatus::kQueued;
  std::int64_t createdUs = 0;
  std::int64_t sentUs = 0;
  std::int64_t answeredUs = 0;
  std::string protocol;  // of the connection it was sent on
  std::string answer;
};

struct TrackerOptions {
  std::string host = "0.0.0.0";
  std::vector<std::string> enabled;            // TCP protocol names (osmand is served elsewhere)
  std::map<std::string, std::uint16_t> ports;  // overrides of the usual ports
  bool registerUnknown = true;
  std::string nodeId;
  std::size_t maxSkippedBytes = 64 * 1024;  // unframeable bytes tolerated per connection
  bool proxyProtocol = false;               // every listener expects a PROXY protocol header first
};

class TrackerServer {
 public:
  // `knownDevice` answers whether a device id is already known (used when registerUnknown is
  // false); it may block briefly, it runs once per connection at identification.
  TrackerServer(net::EventLoopPool& pool, ingest::Pipeline& pipeline, TrackerOptions options,
                std::function<bool(const std::string&)> knownDevice);
  ~TrackerServer();

  // Binds every enabled listener. Throws std::runtime_error naming the protocol and address.
  void start();
  void stopAccepting();
  void shutdown(std::chrono::milliseconds timeout);

  // protocol → bound port
  std::map<std::string, std::uint16_t> ports() const;
  TrackerStats stats() const;

  // Downlink commands (any thread). Queued while the device is offline, sent when it connects.
  CommandRecord submitCommand(const std::string& deviceId, codec::trackers::Command command,
                              std::string typeName);
  std::vector<CommandRecord> commands(const std::string& deviceId) const;
  std::optional<CommandRecord> command(std::uint64_t id) const;

  // --- for TrackerConnection ---
  ingest::Pipeline& pipeline() { return pipeline_; }
  const TrackerOptions& options() const { return options_; }
  bool acceptDevice(const std::string& deviceId);
  void deviceOnline(const std::string& deviceId,
                    const std::shared_ptr<TrackerConnection>& connection);
  void deviceOffline(const std::string& deviceId, const TrackerConnection* connection);
  void commandAnswered(const std::string& deviceId, const std::string& answer);
  void commandSent(std::uint64_t id, const std::string& protocol, bool supported);
  void connectionClosed();

  // Counters bumped by connections (relaxed atomics; read by stats()).
  struct Counters {
    std::atomic<std::uint64_t> frames{0}, positions{0}, badChecksums{0}, badLengths{0},
        skippedBytes{0}, refusedDevices{0}, closedOversize{0};
  };
  Counters& counters() { return counters_; }

 private:
  void sendQueued(const std::string& deviceId);

  net::EventLoopPool& pool_;
  ingest::Pipeline& pipeline_;
  TrackerOptions options_;
  std::function<bool(const std::string&)> knownDevice_;
  std::vector<std::unique_ptr<net::TcpListener>> listeners_;
  std::map<std::string, std::uint16_t> ports_;
  std::atomic<std::int64_t> open_{0};
  Counters counters_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;  // devices and commands: identification and API calls only
  std::unordered_map<std::string, std::weak_ptr<TrackerConnection>> online_;
  std::deque<CommandRecord> commands_;  // bounded history, newest last
  std::uint64_t nextCommandId_ = 1;
};

}  // namespace tern::trackers
