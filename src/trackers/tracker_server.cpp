#include "trackers/tracker_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <stdexcept>
#include <thread>

#include "core/time.h"
#include "trackers/tracker_connection.h"

namespace tern::trackers {

namespace asio = boost::asio;
namespace trk = codec::trackers;

namespace {
constexpr std::size_t kCommandHistory = 10000;
}

const char* commandStatusName(CommandStatus status) {
  switch (status) {
    case CommandStatus::kQueued:
      return "queued";
    case CommandStatus::kSent:
      return "sent";
    case CommandStatus::kAnswered:
      return "answered";
    case CommandStatus::kUnsupported:
      return "unsupported";
    case CommandStatus::kFailed:
      return "failed";
  }
  return "unknown";
}

TrackerServer::TrackerServer(net::EventLoopPool& pool, ingest::Pipeline& pipeline,
                             TrackerOptions options,
                             std::function<bool(const std::string&)> knownDevice)
    : pool_(pool),
      pipeline_(pipeline),
      options_(std::move(options)),
      knownDevice_(std::move(knownDevice)) {}

TrackerServer::~TrackerServer() = default;

void TrackerServer::start() {
  for (const auto& name : options_.enabled) {
    const trk::ProtocolInfo* info = trk::findProtocol(name);
    if (info == nullptr) throw std::runtime_error("trackers: unknown protocol '" + name + "'");
    std::uint16_t port = info->defaultPort;
    if (auto it = options_.ports.find(name); it != options_.ports.end()) port = it->second;
    auto listener = std::make_unique<net::TcpListener>(
        pool_, "trackers/" + name, [this, info](net::AcceptedConnection accepted) {
          if (stopping_) return;
          open_.fetch_add(1);
          auto executor = accepted.socket.get_executor();
          asio::post(executor, [this, info, a = std::move(accepted)]() mutable {
            std::make_shared<TrackerConnection>(*this, *info, std::move(a.socket),
                                                std::move(a.remoteAddress),
                                                std::move(a.initialBytes))
                ->start();
          });
        });
    listener->setProxyProtocol(options_.proxyProtocol);
    listener->start(core::HostPort{options_.host, port});
    ports_[name] = listener->port();
    listeners_.push_back(std::move(listener));
  }
}

void TrackerServer::stopAccepting() {
  stopping_ = true;
  for (auto& listener : listeners_) listener->stop();
}

void TrackerServer::shutdown(std::chrono::milliseconds timeout) {
  stopping_ = true;
  std::vector<std::shared_ptr<TrackerConnection>> open;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, weak] : online_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
  }
  for (auto& connection : open) {
    asio::post(connection->executor(),
               [connection] { connection->closeFromServer("server shutting down"); });
  }
  open.clear();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (open_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::map<std::string, std::uint16_t> TrackerServer::ports() const {
  return ports_;
}

TrackerStats TrackerServer::stats() const {
  TrackerStats s;
  s.connections = static_cast<std::uint64_t>(std::max<std::int64_t>(0, open_.load()));
  s.frames = counters_.frames.load();
  s.positions = counters_.positions.load();
  s.badChecksums = counters_.badChecksums.load();
  s.badLengths = counters_.badLengths.load();
  s.skippedBytes = counters_.skippedBytes.load();
  s.refusedDevices = counters_.refusedDevices.load();
  s.closedOversize = counters_.closedOversize.load();
  return s;
}

bool TrackerServer::acceptDevice(const std::string& deviceId) {
  if (options_.registerUnknown) return true;
  bool known = knownDevice_ && knownDevice_(deviceId);
  if (!known) {
    counters_.refusedDevices.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("trackers: refusing unknown device {} (trackers.register_unknown = false)",
                 deviceId);
  }
  return known;
}

void TrackerServer::connectionClosed() {
  open_.fetch_sub(1);
}

void TrackerServer::deviceOnline(const std::string& deviceId,
                                 const std::shared_ptr<TrackerConnection>& connection) {
  {
    std::lock_guard lock(mutex_);
    online_[deviceId] = connection;
  }
  sendQueued(deviceId);
}

void TrackerServer::deviceOffline(const std::string& deviceId,
                                  const TrackerConnection* connection) {
  std::lock_guard lock(mutex_);
  auto it = online_.find(deviceId);
  if (it != online_.end() && it->second.lock().get() == connection) online_.erase(it);
}

CommandRecord TrackerServer::submitCommand(const std::string& deviceId, trk::Command command,
                                           std::string typeName) {
  CommandRecord record;
  {
    std::lock_guard lock(mutex_);
    record.id = nextCommandId_++;
    record.deviceId = deviceId;
    record.command = std::move(command);
    record.typeName = std::move(typeName);
    record.createdUs = core::nowMicros();
    commands_.push_back(record);
    while (commands_.size() > kCommandHistory) commands_.pop_front();
  }
  sendQueued(deviceId);
  auto latest = this->command(record.id);
  return latest ? *latest : record;
}

void TrackerServer::sendQueued(const std::string& deviceId) {
  std::shared_ptr<TrackerConnection> connection;
  std::vector<std::pair<std::uint64_t, trk::Command>> toSend;
  {
    std::lock_guard lock(mutex_);
    auto it = online_.find(deviceId);
    if (it == online_.end()) return;
    connection = it->second.lock();
    if (!connection) return;
    for (auto& record : commands_) {
      if (record.deviceId == deviceId && record.status == CommandStatus::kQueued) {
        // Marked as sent now so a second trigger does not send it twice; the connection
        // corrects the status if its protocol cannot encode it.
        record.status = CommandStatus::kSent;
        record.sentUs = core::nowMicros();
        toSend.emplace_back(record.id, record.command);
      }
    }
  }
  for (auto& [id, command] : toSend) {
    asio::post(connection->executor(), [connection, id = id, command = std::move(command)] {
      connection->sendCommand(id, command);
    });
  }
}

void TrackerServer::commandSent(std::uint64_t id, const std::string& protocol, bool supported) {
  std::lock_guard lock(mutex_);
  for (auto& record : commands_) {
    if (record.id != id) continue;
    record.protocol = protocol;
    if (!supported) record.status = CommandStatus::kUnsupported;
    return;
  }
}

void TrackerServer::commandAnswered(const std::string& deviceId, const std::string& answer) {
  std::lock_guard lock(mutex_);
  // The answer belongs to the oldest command still waiting for one.
  for (auto& record : commands_) {
    if (record.deviceId == deviceId && record.status == CommandStatus::kSent) {
      record.status = CommandStatus::kAnswered;
      record.answer = answer;
      record.answeredUs = core::nowMicros();
      return;
    }
  }
}

std::vector<CommandRecord> TrackerServer::commands(const std::string& deviceId) const {
  std::vector<CommandRecord> out;
  std::lock_guard lock(mutex_);
  for (const auto& record : commands_) {
    if (record.deviceId == deviceId) out.push_back(record);
  }
  return out;
}

std::optional<CommandRecord> TrackerServer::command(std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  for (const auto& record : commands_) {
    if (record.id == id) return record;
  }
  return std::nullopt;
}

}  // namespace tern::trackers
