#include "tools/sim_mqtt.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <variant>
#include <vector>

#include "codec/mqtt/codec.h"
#include "core/ids.h"
#include "core/logging.h"

namespace tern::tools {

namespace {

namespace asio = boost::asio;
namespace mqtt = codec::mqtt;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint16_t kKeepAliveSeconds = 60;
// Ping well inside the keep-alive so the broker never has to time us out.
constexpr Clock::duration kPingAfter = 45s;
constexpr Clock::duration kConnectTimeout = 10s;
constexpr Clock::duration kGrace = 10s;  // wait for acks after the last send
constexpr Clock::duration kBackoffMin = 100ms;
constexpr Clock::duration kBackoffMax = 5s;
constexpr Clock::duration kStartSpread = 1s;
// Concurrent TCP+CONNECT handshakes; more only overflows the broker's accept backlog.
constexpr int kMaxConnecting = 256;
// Beyond this many unacknowledged messages a device skips ticks instead of growing without bound.
constexpr std::size_t kMaxInflight = 1024;
constexpr std::uint32_t kMaxIncomingPacket = 1024 * 1024;
constexpr int kErrorsLoggedAtWarn = 5;
constexpr const char* kClientIdPrefix = "tern-sim-";

std::mt19937& rng() {
  thread_local std::mt19937 engine{std::random_device{}()};
  return engine;
}

double uniform(double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng());
}

Clock::duration fromSeconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// State every device reads; the counters are the result.
struct Shared {
  SimMqttOptions options;
  tcp::endpoint endpoint;
  std::optional<Clock::time_point> deadline;
  std::shared_ptr<spdlog::logger> log;
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> acked{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<int> connecting{0};
  std::atomic<int> errorsLogged{0};
};

// One simulated device: a small state machine driven entirely by completion handlers on one
// io_context, so it needs no locking. Handlers capture `this`; runSimMqtt keeps every Device
// alive until its io_context has run out of work.
class Device {
 public:
  Device(asio::io_context& io, Shared& shared)
      : shared_(shared),
        socket_(io),
        ctrlTimer_(io),
        sendTimer_(io),
        topic_(shared.options.topicPrefix + core::randomUuid()) {}

  void start(Clock::duration delay) {
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + delay, [this] { connect(); });
    if (shared_.deadline) {
      // A device that never gets connected must still notice the end of the run.
      arm(sendTimer_, sendSeq_, *shared_.deadline, [this] { stopSending(); });
    }
  }

 private:
  enum class State : std::uint8_t {
    kIdle,
    kConnecting,
    kAwaitConnack,
    kConnected,
    kDisconnecting,
    kDone
  };

  // A QoS 1/2 message awaiting its acknowledgement. The payload is rebuilt from `value` on
  // resend, which keeps this at four bytes.
  struct Inflight {
    std::uint16_t id;
    std::uint8_t value;
    bool released;  // QoS 2: PUBREC seen and PUBREL sent; now waiting for PUBCOMP
  };

  std::string_view uuid() const {
    return std::string_view(topic_).substr(shared_.options.topicPrefix.size());
  }
  std::uint8_t qos() const { return shared_.options.qos; }
  bool deadlinePassed() const { return shared_.deadline && Clock::now() >= *shared_.deadline; }

  // Waits on `timer`; a later arm or disarm of the same timer makes this wait a no-op, even if
  // its handler was already queued when the timer was re-armed.
  template <class F>
  void arm(asio::steady_timer& timer, std::uint32_t& seq, Clock::time_point at, F f) {
    timer.expires_at(at);
    const std::uint32_t mine = ++seq;
    timer.async_wait([this, &seq, mine, f](const boost::system::error_code& ec) {
      if (!ec && mine == seq && state_ != State::kDone) {
        f();
      }
    });
  }
  void disarm(asio::steady_timer& timer, std::uint32_t& seq) {
    ++seq;
    timer.cancel();
  }

  void connect() {
    if (deadlinePassed() && !sendingDone_) {
      stopSending();
      if (state_ == State::kDone) {
        return;
      }
    }
    if (sendingDone_ && (inflight_.empty() || Clock::now() >= graceDeadline_)) {
      finish();
      return;
    }
    if (shared_.connecting.fetch_add(1) >= kMaxConnecting) {
      shared_.connecting.fetch_sub(1);
      const auto retry = fromSeconds(uniform(0.005, 0.025));
      arm(ctrlTimer_, ctrlSeq_, Clock::now() + retry, [this] { connect(); });
      return;
    }
    holdsSlot_ = true;
    if (attempted_) {
      shared_.reconnects.fetch_add(1, std::memory_order_relaxed);
    }
    attempted_ = true;
    state_ = State::kConnecting;
    const std::uint32_t gen = ++gen_;
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + kConnectTimeout,
        [this] { lost("connect timed out"); });
    socket_.async_connect(shared_.endpoint, [this, gen](const boost::system::error_code& ec) {
      if (gen != gen_) {
        return;
      }
      if (ec) {
        lost("connect: " + ec.message());
        return;
      }
      onTcpConnected();
    });
  }

  void onTcpConnected() {
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    state_ = State::kAwaitConnack;
    mqtt::Connect connect;
    connect.protocolName = "MQTT";
    connect.protocolLevel = 4;
    connect.cleanSession = true;
    connect.keepAlive = kKeepAliveSeconds;
    connect.clientId = std::string(kClientIdPrefix) + std::string(uuid());
    mqtt::encodeConnect(connect, out_);
    flush();
    startRead();
  }

  void onConnack(const mqtt::Connack& connack) {
    if (state_ != State::kAwaitConnack) {
      lost("unexpected CONNACK");
      return;
    }
    if (connack.returnCode != mqtt::ConnackCode::kAccepted) {
      lost(
          fmt::format("connection refused, CONNACK code {}", static_cast<int>(connack.returnCode)));
      return;
    }
    releaseSlot();
    state_ = State::kConnected;
    backoff_ = kBackoffMin;
    // Unacknowledged messages from a previous connection go out again, marked as duplicates.
    for (const Inflight& m : inflight_) {
      if (m.released) {
        mqtt::encodeAck(mqtt::PacketType::kPubrel, m.id, out_);
      } else {
        encodeMessage(m.id, m.value, true);
      }
    }
    flush();
    armPing();
    if (!sendScheduled_) {
      // The first message lands at a random point of the first interval, so devices that
      // connected together do not publish in lockstep.
      sendScheduled_ = true;
      scheduleSend(Clock::now() + fromSeconds(uniform(0.0, shared_.options.rateSeconds)));
    }
    maybeFinish();
  }

  void scheduleSend(Clock::time_point at) {
    if (shared_.deadline && at > *shared_.deadline) {
      at = *shared_.deadline;
    }
    arm(sendTimer_, sendSeq_, at, [this] { onSendTick(); });
  }

  void onSendTick() {
    if (deadlinePassed()) {
      stopSending();
      return;
    }
    // A tick while disconnected (or with a full window) is skipped, not lost: the message is
    // simply produced later, so `count` still means messages delivered per device.
    if (state_ == State::kConnected && inflight_.size() < kMaxInflight) {
      publishNew();
    }
    if (shared_.options.count != 0 && produced_ >= shared_.options.count) {
      stopSending();
      return;
    }
    const double rate = shared_.options.rateSeconds;
    scheduleSend(Clock::now() + fromSeconds(rate * uniform(0.9, 1.1)));
  }

  void publishNew() {
    const auto value = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(20, 30)(rng()));
    ++produced_;
    shared_.sent.fetch_add(1, std::memory_order_relaxed);
    if (qos() == 0) {
      shared_.acked.fetch_add(1, std::memory_order_relaxed);
      encodeMessage(0, value, false);
    } else {
      const std::uint16_t id = allocatePacketId();
      inflight_.push_back({id, value, false});
      encodeMessage(id, value, false);
    }
    flush();
  }

  void encodeMessage(std::uint16_t id, std::uint8_t value, bool dup) {
    char payload[96];
    const auto written = fmt::format_to_n(payload, sizeof payload, R"({{"uuid":"{}","value":{}}})",
                                          uuid(), static_cast<int>(value));
    const std::size_t size = std::min(written.size, sizeof payload);
    mqtt::encodePublish(topic_, std::string_view(payload, size), qos(), false, dup && qos() > 0, id,
                        out_);
  }

  std::uint16_t allocatePacketId() {
    // The window is far below 65535, so a free id is always found quickly.
    while (true) {
      nextId_ = static_cast<std::uint16_t>(nextId_ + 1);
      if (nextId_ == 0) {
        continue;
      }
      const bool used = std::any_of(inflight_.begin(), inflight_.end(),
                                    [this](const Inflight& m) { return m.id == nextId_; });
      if (!used) {
        return nextId_;
      }
    }
  }

  void stopSending() {
    if (sendingDone_) {
      return;
    }
    sendingDone_ = true;
    graceDeadline_ = Clock::now() + kGrace;
    arm(sendTimer_, sendSeq_, graceDeadline_, [this] { onGraceExpired(); });
    maybeFinish();
  }

  void onGraceExpired() {
    // Whatever is still unacknowledged stays so: sent > acked in the result tells the story.
    if (state_ == State::kConnected) {
      disconnect();
    } else if (state_ != State::kDisconnecting) {
      finish();
    }
  }

  void maybeFinish() {
    if (!sendingDone_ || !inflight_.empty()) {
      return;
    }
    if (state_ == State::kConnected) {
      disconnect();
    } else if (state_ != State::kDisconnecting && state_ != State::kDone) {
      finish();
    }
  }

  void disconnect() {
    state_ = State::kDisconnecting;
    disarm(ctrlTimer_, ctrlSeq_);
    mqtt::encodeEmpty(mqtt::PacketType::kDisconnect, out_);
    flush();  // finish() follows once the DISCONNECT has been written
  }

  void finish() {
    state_ = State::kDone;
    ++gen_;
    releaseSlot();
    disarm(ctrlTimer_, ctrlSeq_);
    disarm(sendTimer_, sendSeq_);
    closeSocket();
  }

  void closeSocket() {
    boost::system::error_code ignored;
    if (socket_.is_open()) {
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
    }
    rx_.clear();
    out_.clear();
    writing_ = false;
    pingOutstanding_ = false;
  }

  void releaseSlot() {
    if (holdsSlot_) {
      holdsSlot_ = false;
      shared_.connecting.fetch_sub(1);
    }
  }

  // The connection failed or broke: count it, and try again later unless there is nothing
  // left to do.
  void lost(const std::string& reason) {
    if (state_ == State::kDone) {
      return;
    }
    if (state_ == State::kDisconnecting) {
      finish();  // the broker closing after our DISCONNECT is the normal end
      return;
    }
    shared_.errors.fetch_add(1, std::memory_order_relaxed);
    // The first few errors explain a failing run; thousands of devices repeating them would not.
    const bool loud =
        shared_.errorsLogged.fetch_add(1, std::memory_order_relaxed) < kErrorsLoggedAtWarn;
    shared_.log->log(loud ? spdlog::level::warn : spdlog::level::debug, "sim: device {}: {}",
                     uuid(), reason);
    ++gen_;
    releaseSlot();
    closeSocket();
    state_ = State::kIdle;
    disarm(ctrlTimer_, ctrlSeq_);
    if (deadlinePassed() && !sendingDone_) {
      stopSending();  // may finish the device when nothing is waiting for an ack
      if (state_ == State::kDone) {
        return;
      }
    }
    if (sendingDone_ && (inflight_.empty() || Clock::now() >= graceDeadline_)) {
      finish();
      return;
    }
    const auto delay = backoff_;
    backoff_ = std::min(backoff_ * 2, kBackoffMax);
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + delay, [this] { connect(); });
  }

  void armPing() {
    arm(ctrlTimer_, ctrlSeq_, lastSend_ + kPingAfter, [this] { onPingTimer(); });
  }

  void onPingTimer() {
    if (state_ != State::kConnected) {
      return;
    }
    if (Clock::now() - lastSend_ >= kPingAfter) {
      if (pingOutstanding_) {
        lost("no PINGRESP within keep-alive");
        return;
      }
      pingOutstanding_ = true;
      mqtt::encodeEmpty(mqtt::PacketType::kPingreq, out_);
      flush();
    }
    armPing();
  }

  void flush() {
    if (writing_ || out_.empty() || state_ == State::kIdle || state_ == State::kConnecting ||
        state_ == State::kDone) {
      return;
    }
    writing_ = true;
    std::swap(out_, wbuf_);
    out_.clear();
    lastSend_ = Clock::now();
    const std::uint32_t gen = gen_;
    asio::async_write(socket_, asio::buffer(wbuf_),
                      [this, gen](const boost::system::error_code& ec, std::size_t) {
                        if (gen != gen_) {
                          return;
                        }
                        writing_ = false;
                        wbuf_.clear();
                        if (ec) {
                          lost("write: " + ec.message());
                        } else if (!out_.empty()) {
                          flush();
                        } else if (state_ == State::kDisconnecting) {
                          finish();
                        }
                      });
  }

  void startRead() {
    const std::uint32_t gen = gen_;
    socket_.async_read_some(
        asio::buffer(chunk_), [this, gen](const boost::system::error_code& ec, std::size_t n) {
          if (gen != gen_) {
            return;
          }
          if (ec) {
            lost(ec == asio::error::eof ? "connection closed by broker" : "read: " + ec.message());
            return;
          }
          rx_.append(chunk_.data(), n);
          processIncoming();
          if (gen == gen_ && state_ != State::kDone) {
            startRead();
          }
        });
  }

  void processIncoming() {
    const std::uint32_t gen = gen_;
    std::size_t offset = 0;
    while (true) {
      const mqtt::Frame frame =
          mqtt::splitFrame(std::string_view(rx_).substr(offset), kMaxIncomingPacket);
      if (frame.status == mqtt::DecodeStatus::kNeedMore) {
        break;
      }
      if (frame.status != mqtt::DecodeStatus::kOk) {
        lost(std::string("bad packet from broker: ") + (frame.error ? frame.error : "?"));
        return;
      }
      mqtt::Packet packet;
      const mqtt::ParseResult parsed = mqtt::parsePacket(frame.header, frame.body, packet);
      if (parsed.status != mqtt::DecodeStatus::kOk) {
        lost(std::string("bad packet from broker: ") + (parsed.error ? parsed.error : "?"));
        return;
      }
      offset += frame.size;
      handlePacket(packet);
      if (gen != gen_ || state_ == State::kDone) {
        return;  // the connection was dropped while handling; rx_ is already cleared
      }
    }
    rx_.erase(0, offset);
  }

  void handlePacket(const mqtt::Packet& packet) {
    pingOutstanding_ = false;  // anything from the broker proves the connection is alive
    if (const auto* connack = std::get_if<mqtt::Connack>(&packet)) {
      onConnack(*connack);
      return;
    }
    if (state_ != State::kConnected && state_ != State::kDisconnecting) {
      lost(std::string("unexpected ") + mqtt::packetTypeName(mqtt::packetType(packet)) +
           " before CONNACK");
      return;
    }
    if (const auto* ack = std::get_if<mqtt::Ack>(&packet)) {
      onAck(*ack);
    } else if (const auto* publish = std::get_if<mqtt::Publish>(&packet)) {
      // We never subscribe, but answer correctly so a misbehaving broker does not stall.
      if (publish->qos == 1) {
        mqtt::encodeAck(mqtt::PacketType::kPuback, publish->packetId, out_);
      } else if (publish->qos == 2) {
        mqtt::encodeAck(mqtt::PacketType::kPubrec, publish->packetId, out_);
      }
      flush();
    } else if (const auto* empty = std::get_if<mqtt::Empty>(&packet);
               empty == nullptr || empty->type != mqtt::PacketType::kPingresp) {
      lost(std::string("unexpected ") + mqtt::packetTypeName(mqtt::packetType(packet)));
    }
  }

  void onAck(const mqtt::Ack& ack) {
    const auto it = std::find_if(inflight_.begin(), inflight_.end(),
                                 [&](const Inflight& m) { return m.id == ack.packetId; });
    switch (ack.type) {
      case mqtt::PacketType::kPuback:
        if (it != inflight_.end() && qos() == 1) {
          complete(it);
        }
        break;
      case mqtt::PacketType::kPubrec:
        // A repeated PUBREC (or one for a message we already finished) still gets a PUBREL.
        if (it != inflight_.end()) {
          it->released = true;
        }
        mqtt::encodeAck(mqtt::PacketType::kPubrel, ack.packetId, out_);
        flush();
        break;
      case mqtt::PacketType::kPubcomp:
        if (it != inflight_.end() && it->released) {
          complete(it);
        }
        break;
      case mqtt::PacketType::kPubrel:
        mqtt::encodeAck(mqtt::PacketType::kPubcomp, ack.packetId, out_);
        flush();
        break;
      default:
        break;
    }
  }

  void complete(std::vector<Inflight>::iterator it) {
    // Each message leaves inflight_ once, so a duplicate ack after a resend is not counted.
    inflight_.erase(it);
    shared_.acked.fetch_add(1, std::memory_order_relaxed);
    maybeFinish();
  }

  Shared& shared_;
  tcp::socket socket_;
  asio::steady_timer ctrlTimer_;  // start delay, connect timeout, keep-alive, reconnect backoff
  asio::steady_timer sendTimer_;  // next publish, then the grace period
  std::string topic_;             // prefix + uuid
  std::vector<Inflight> inflight_;
  std::string rx_;
  std::string out_;                // encoded, waiting for the current write to finish
  std::string wbuf_;               // being written
  std::array<char, 128> chunk_{};  // acks are 2-4 bytes; a small read buffer suffices
  Clock::time_point lastSend_{};
  Clock::time_point graceDeadline_{};
  Clock::duration backoff_ = kBackoffMin;
  std::uint64_t produced_ = 0;
  std::uint32_t gen_ = 0;  // bumped whenever the connection is torn down; stale handlers compare
  std::uint32_t ctrlSeq_ = 0;
  std::uint32_t sendSeq_ = 0;
  std::uint16_t nextId_ = 0;
  State state_ = State::kIdle;
  bool holdsSlot_ = false;
  bool attempted_ = false;
  bool sendScheduled_ = false;
  bool sendingDone_ = false;
  bool writing_ = false;
  bool pingOutstanding_ = false;
};

// Thousands of sockets need thousands of descriptors; the soft limit is often 1024.
void raiseFileLimit(unsigned devices, spdlog::logger& log) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  const rlim_t wanted = static_cast<rlim_t>(devices) + 64;
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) {
    return;
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0 ||
      (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted)) {
    log.warn("sim: open file limit {} is below the {} descriptors {} devices need",
             static_cast<unsigned long long>(limit.rlim_cur),
             static_cast<unsigned long long>(wanted), devices);
  }
}

tcp::endpoint resolve(const std::string& host, std::uint16_t port) {
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("sim: cannot resolve " + host + ": " + ec.message());
  }
  return results.begin()->endpoint();
}

}  // namespace

SimMqttResult runSimMqtt(const SimMqttOptions& options) {
  if (!(options.rateSeconds > 0)) {
    throw std::invalid_argument("sim: rate must be a positive number of seconds");
  }
  if (options.qos > 2) {
    throw std::invalid_argument("sim: qos must be 0, 1 or 2");
  }
  Shared shared;
  shared.options = options;
  shared.log = core::logger("sim");
  if (options.devices == 0) {
    return {};
  }
  raiseFileLimit(options.devices, *shared.log);
  shared.endpoint = resolve(options.host, options.port);

  const unsigned threads = std::max(1u, options.threads);
  std::vector<std::unique_ptr<asio::io_context>> loops;
  for (unsigned i = 0; i < threads; ++i) {
    loops.push_back(std::make_unique<asio::io_context>(1));
  }
  if (options.durationSeconds > 0) {
    shared.deadline = Clock::now() + fromSeconds(options.durationSeconds);
  }

  std::vector<std::unique_ptr<Device>> devices;
  devices.reserve(options.devices);
  for (unsigned i = 0; i < options.devices; ++i) {
    asio::io_context& io = *loops[i % threads];
    devices.push_back(std::make_unique<Device>(io, shared));
    // Connection starts are spread over the first second so the broker is not stampeded.
    const auto delay =
        options.devices == 1
            ? Clock::duration::zero()
            : fromSeconds(uniform(0.0, 1.0) * std::chrono::duration<double>(kStartSpread).count());
    Device* device = devices.back().get();
    asio::post(io, [device, delay] { device->start(delay); });
  }
  shared.log->info("sim: {} devices -> {}:{}, every {}s, qos {}, {} thread(s)", options.devices,
                   options.host, options.port, options.rateSeconds, options.qos, threads);

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) {
    workers.emplace_back([&loops, i] { loops[i]->run(); });
  }
  loops[0]->run();
  for (auto& worker : workers) {
    worker.join();
  }
  // Devices go before their io_contexts: their sockets and timers belong to those contexts.
  devices.clear();

  SimMqttResult result;
  result.sent = shared.sent.load();
  result.acked = shared.acked.load();
  result.errors = shared.errors.load();
  result.reconnects = shared.reconnects.load();
  return result;
}

std::string formatSimSummary(const SimMqttResult& result, double elapsedSeconds) {
  const double rate = elapsedSeconds > 0 ? static_cast<double>(result.sent) / elapsedSeconds : 0.0;
  return fmt::format("sent={} acked={} errors={} reconnects={} elapsed={:.2f}s rate={:.1f}/s",
                     result.sent, result.acked, result.errors, result.reconnects, elapsedSeconds,
                     rate);
}

}  // namespace tern::tools
