// tern-bench-mqtt: a load client for comparing MQTT brokers on the ingest path.
//
//   throughput: C connections publish QoS 1, each keeping up to W unacknowledged publishes in
//               flight and sending a new one as each PUBACK arrives; reports acked messages per
//               second over a D-second window that starts once every connection is up.
//   latency:    one subscriber (QoS 0) and P publishers sending QoS 0 at a fixed total rate R,
//               paced by timers; each payload carries its steady_clock send time, and the
//               subscriber reports publish-to-receive latency percentiles. `missing` counts
//               messages not received by the end of the grace period: dropped by the broker,
//               or still queued in it (a broker that has fallen behind).
//
// Prints one line `RESULT mode=... key=value ...` on stdout; progress and errors go to stderr.
// Every wait is bounded: a broker that does not answer makes the run fail, never hang.
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "codec/mqtt/codec.h"
#include "core/config.h"
#include "core/ids.h"

namespace tern::tools {

namespace {

namespace asio = boost::asio;
namespace mqtt = codec::mqtt;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint16_t kKeepAliveSeconds = 60;
constexpr Clock::duration kPingEvery = 20s;
constexpr std::uint32_t kMaxIncomingPacket = 1024 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxCatchUpPerTick = 1000;  // latency mode: sends per timer wake, at most
constexpr Clock::duration kPollStep = 10ms;       // how often the main thread looks at the counters
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

enum class Mode : std::uint8_t { kThroughput, kLatency };

struct Options {
  Mode mode = Mode::kThroughput;
  std::string broker = "127.0.0.1:1883";
  std::string label;  // name printed as broker=..., defaults to the address
  unsigned threads = 1;
  unsigned connections = 100;  // throughput: publishing connections
  unsigned window = 20;        // throughput: unacknowledged QoS 1 publishes per connection
  unsigned publishers = 10;    // latency: publishing connections
  double rate = 20000;         // latency: total messages per second
  double seconds = 0;          // 0 → mode default (20 throughput, 10 latency)
  std::string topicPrefix = "device/";
  std::string filter = "device/+";  // latency: the subscriber's topic filter
  std::size_t payloadSize = 100;
  double connectTimeout = 10;  // seconds, for all connections together
  double grace = 5;            // seconds to wait for outstanding acks / deliveries after the window
  bool progress = false;
  tcp::endpoint endpoint;  // resolved from `broker`
};

Clock::duration fromSeconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double toMs(std::int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// CPU seconds (user + system) this process has used, to compare against the brokers'.
double cpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Counters and the first error, shared by every connection and read by the main thread.
struct Shared {
  explicit Shared(const Options& o) : options(o) {}
  const Options& options;
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> acked{0};
  std::atomic<std::uint64_t> received{0};  // latency: publishes that reached the subscriber
  std::atomic<std::uint64_t> foreign{0};   // latency: publishes without our timestamp
  std::atomic<std::uint64_t> errors{0};
  std::atomic<unsigned> ready{0};  // connected (and, for the subscriber, subscribed)
  std::atomic<unsigned> failed{0};
  std::atomic<unsigned> closed{0};
  std::atomic<bool> measuring{false};  // throughput: ack latencies are recorded while set
  std::mutex errorMutex;
  std::string firstError;

  void fail(const std::string& what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(errorMutex);
    if (firstError.empty()) firstError = what;
  }
  std::string error() {
    std::lock_guard lock(errorMutex);
    return firstError;
  }
};

// `{"uuid":"<uuid>","value":23,"seq":123[,"ts_ns":N]}` padded with blanks inside the braces to
// `size` bytes (still valid JSON, no extra field for the broker to store).
void makePayload(std::string& out, std::string_view uuid, std::uint64_t seq,
                 std::optional<std::int64_t> tsNs, std::size_t size) {
  out.clear();
  const int value = 20 + static_cast<int>(seq % 11);
  if (tsNs) {
    fmt::format_to(std::back_inserter(out), R"({{"uuid":"{}","value":{},"seq":{},"ts_ns":{})", uuid,
                   value, seq, *tsNs);
  } else {
    fmt::format_to(std::back_inserter(out), R"({{"uuid":"{}","value":{},"seq":{})", uuid, value,
                   seq);
  }
  if (out.size() + 1 < size) out.append(size - out.size() - 1, ' ');
  out.push_back('}');
}

std::optional<std::int64_t> payloadTimestamp(std::string_view payload) {
  constexpr std::string_view kKey = R"("ts_ns":)";
  const auto at = payload.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  const char* begin = payload.data() + at + kKey.size();
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(begin, payload.data() + payload.size(), value);
  if (ec != std::errc() || ptr == begin) return std::nullopt;
  return value;
}

// One MQTT connection. All its state lives on one io_context and is touched only by handlers
// running there; the main thread talks to it by posting (begin, stopSending, disconnect) and
// reads only the atomics in Shared. Handlers capture `this`: main joins every io thread before
// destroying connections.
class Connection {
 public:
  enum class Role : std::uint8_t { kQos1Publisher, kQos0Publisher, kSubscriber };

  Connection(asio::io_context& io, Shared& shared, Role role, unsigned index)
      : shared_(shared),
        role_(role),
        index_(index),
        socket_(io),
        pingTimer_(io),
        sendTimer_(io),
        uuid_(core::randomUuid()),
        topic_(shared.options.topicPrefix + uuid_),
        rx_(kReadChunk) {}

  void start() {
    socket_.async_connect(shared_.options.endpoint, [this](const boost::system::error_code& ec) {
      if (ec) {
        lost("connect: " + ec.message());
        return;
      }
      boost::system::error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
      mqtt::Connect connect;
      connect.protocolName = "MQTT";
      connect.protocolLevel = 4;
      connect.cleanSession = true;
      connect.keepAlive = kKeepAliveSeconds;
      connect.clientId = fmt::format("tern-bench-{}-{}", index_, uuid_.substr(0, 8));
      mqtt::encodeConnect(connect, out_);
      state_ = State::kAwaitConnack;
      flush();
      startRead();
      armPing();
    });
  }

  // Throughput: fill the window. Latency: start the paced schedule at `t0`; this publisher sends
  // the messages k = index, index + P, index + 2P, ... at t0 + k / R, until `end`.
  void begin(Clock::time_point t0, Clock::time_point end) {
    if (state_ != State::kReady) return;
    sending_ = true;
    if (role_ == Role::kQos1Publisher) {
      while (inflight_.size() < shared_.options.window) publishOne();
      flush();
    } else if (role_ == Role::kQos0Publisher) {
      t0_ = t0;
      end_ = end;
      nextK_ = index_;
      paceTick();
    }
  }

  void stopSending() {
    sending_ = false;
    sendTimer_.cancel();
  }

  void disconnect() {
    stopSending();
    if (state_ != State::kReady) {
      closeSocket();
      return;
    }
    state_ = State::kDisconnecting;
    mqtt::encodeEmpty(mqtt::PacketType::kDisconnect, out_);
    flush();
  }

  std::size_t inflight() const { return inflight_.size(); }
  std::vector<std::int64_t>& latencies() { return latenciesNs_; }
  std::int64_t maxSendLagNs() const { return maxSendLagNs_; }

 private:
  enum class State : std::uint8_t {
    kConnecting,
    kAwaitConnack,
    kAwaitSuback,
    kReady,
    kDisconnecting,
    kClosed
  };

  struct Inflight {
    std::uint16_t id;
    std::int64_t sentNs;
  };

  void lost(const std::string& reason) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kDisconnecting) {
      closeSocket();  // the broker closing after our DISCONNECT is the normal end
      return;
    }
    const bool wasUp = state_ == State::kReady;
    shared_.fail(fmt::format("connection {}: {}{}", index_, reason,
                             wasUp ? " (after it was up)" : " (while connecting)"));
    if (!wasUp) shared_.failed.fetch_add(1);
    closeSocket();
  }

  void closeSocket() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    sending_ = false;
    boost::system::error_code ignored;
    pingTimer_.cancel();
    sendTimer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    shared_.closed.fetch_add(1);
  }

  void armPing() {
    pingTimer_.expires_after(kPingEvery);
    pingTimer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || state_ == State::kClosed) return;
      if (state_ == State::kReady) {
        mqtt::encodeEmpty(mqtt::PacketType::kPingreq, out_);
        flush();
      }
      armPing();
    });
  }

  void onReady() {
    state_ = State::kReady;
    shared_.ready.fetch_add(1);
  }

  void publishOne() {
    std::uint16_t id = 0;
    do {
      nextId_ = static_cast<std::uint16_t>(nextId_ + 1);
      id = nextId_;
    } while (id == 0 || outstanding_.test(id));
    outstanding_.set(id);
    const std::int64_t t = nowNs();
    inflight_.push_back({id, t});
    makePayload(payload_, uuid_, seq_++, std::nullopt, shared_.options.payloadSize);
    mqtt::encodePublish(topic_, payload_, 1, false, false, id, out_);
    shared_.sent.fetch_add(1, std::memory_order_relaxed);
  }

  void onPuback(std::uint16_t id) {
    if (!outstanding_.test(id)) {
      lost(fmt::format("PUBACK for packet id {} that is not in flight", id));
      return;
    }
    outstanding_.reset(id);
    const auto it = std::find_if(inflight_.begin(), inflight_.end(),
                                 [id](const Inflight& m) { return m.id == id; });
    const std::int64_t now = nowNs();
    if (shared_.measuring.load(std::memory_order_relaxed)) latenciesNs_.push_back(now - it->sentNs);
    inflight_.erase(it);
    shared_.acked.fetch_add(1, std::memory_order_relaxed);
    if (sending_) publishOne();  // flushed once per read batch in processIncoming
  }

  // Latency publishers: send every message whose scheduled time has come, then sleep until the
  // next one. A publisher that falls behind catches up in bursts of at most kMaxCatchUpPerTick
  // and the lag is reported (send_lag_max_ms) rather than hidden.
  void paceTick() {
    if (!sending_ || state_ != State::kReady) return;
    const Clock::time_point now = Clock::now();
    const double rate = shared_.options.rate;
    const unsigned stride = shared_.options.publishers;
    auto scheduled = [&](std::uint64_t k) {
      return t0_ + fromSeconds(static_cast<double>(k) / rate);
    };
    std::size_t burst = 0;
    while (burst < kMaxCatchUpPerTick) {
      const Clock::time_point at = scheduled(nextK_);
      if (at >= end_) {
        sending_ = false;
        flush();
        return;
      }
      if (at > now) break;
      const std::int64_t sendNs = nowNs();
      maxSendLagNs_ = std::max<std::int64_t>(
          maxSendLagNs_, std::chrono::duration_cast<std::chrono::nanoseconds>(now - at).count());
      makePayload(payload_, uuid_, nextK_, sendNs, shared_.options.payloadSize);
      mqtt::encodePublish(topic_, payload_, 0, false, false, 0, out_);
      shared_.sent.fetch_add(1, std::memory_order_relaxed);
      nextK_ += stride;
      ++burst;
    }
    flush();
    sendTimer_.expires_at(scheduled(nextK_));
    sendTimer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) paceTick();
    });
  }

  void onPublish(const mqtt::Publish& publish) {
    if (publish.qos == 1) {
      mqtt::encodeAck(mqtt::PacketType::kPuback, publish.packetId, out_);
    } else if (publish.qos == 2) {
      mqtt::encodeAck(mqtt::PacketType::kPubrec, publish.packetId, out_);
    }
    if (role_ != Role::kSubscriber) return;
    const auto sentNs = payloadTimestamp(publish.payload);
    if (!sentNs) {
      shared_.foreign.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    latenciesNs_.push_back(nowNs() - *sentNs);
    shared_.received.fetch_add(1, std::memory_order_relaxed);
  }

  void handlePacket(const mqtt::Packet& packet) {
    if (const auto* connack = std::get_if<mqtt::Connack>(&packet)) {
      if (state_ != State::kAwaitConnack) {
        lost("unexpected CONNACK");
      } else if (connack->returnCode != mqtt::ConnackCode::kAccepted) {
        lost(fmt::format("connection refused, CONNACK code {}",
                         static_cast<int>(connack->returnCode)));
      } else if (role_ == Role::kSubscriber) {
        mqtt::Subscribe subscribe;
        subscribe.packetId = 1;
        subscribe.subscriptions.push_back({shared_.options.filter, 0});
        mqtt::encodeSubscribe(subscribe, out_);
        state_ = State::kAwaitSuback;
      } else {
        onReady();
      }
      return;
    }
    if (state_ == State::kAwaitConnack) {
      lost(std::string("unexpected ") + mqtt::packetTypeName(mqtt::packetType(packet)) +
           " before CONNACK");
      return;
    }
    if (const auto* suback = std::get_if<mqtt::Suback>(&packet)) {
      if (state_ != State::kAwaitSuback) return;
      if (suback->returnCodes.size() != 1 || suback->returnCodes[0] == mqtt::kSubackFailure) {
        lost("subscription to '" + shared_.options.filter + "' refused");
        return;
      }
      onReady();
    } else if (const auto* ack = std::get_if<mqtt::Ack>(&packet)) {
      if (ack->type == mqtt::PacketType::kPuback && role_ == Role::kQos1Publisher) {
        onPuback(ack->packetId);
      } else if (ack->type == mqtt::PacketType::kPubrel) {
        mqtt::encodeAck(mqtt::PacketType::kPubcomp, ack->packetId, out_);
      }
    } else if (const auto* publish = std::get_if<mqtt::Publish>(&packet)) {
      onPublish(*publish);
    }
    // PINGRESP and anything else harmless is ignored.
  }

  void startRead() {
    if (rxEnd_ == rx_.size()) {
      if (rxBegin_ > 0) {
        std::copy(rx_.begin() + static_cast<std::ptrdiff_t>(rxBegin_),
                  rx_.begin() + static_cast<std::ptrdiff_t>(rxEnd_), rx_.begin());
        rxEnd_ -= rxBegin_;
        rxBegin_ = 0;
      } else {
        rx_.resize(rx_.size() * 2);  // bounded by kMaxIncomingPacket via splitFrame
      }
    }
    socket_.async_read_some(
        asio::buffer(rx_.data() + rxEnd_, rx_.size() - rxEnd_),
        [this](const boost::system::error_code& ec, std::size_t n) {
          if (state_ == State::kClosed) return;
          if (ec) {
            lost(ec == asio::error::eof ? "connection closed by broker" : "read: " + ec.message());
            return;
          }
          rxEnd_ += n;
          processIncoming();
          if (state_ != State::kClosed) startRead();
        });
  }

  void processIncoming() {
    while (rxBegin_ < rxEnd_) {
      const std::string_view data(rx_.data() + rxBegin_, rxEnd_ - rxBegin_);
      const mqtt::Frame frame = mqtt::splitFrame(data, kMaxIncomingPacket);
      if (frame.status == mqtt::DecodeStatus::kNeedMore) break;
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
      rxBegin_ += frame.size;
      handlePacket(packet);
      if (state_ == State::kClosed) return;
    }
    if (rxBegin_ == rxEnd_) rxBegin_ = rxEnd_ = 0;
    flush();
  }

  void flush() {
    if (writing_ || out_.empty() || state_ == State::kClosed || state_ == State::kConnecting)
      return;
    writing_ = true;
    std::swap(out_, wbuf_);
    out_.clear();
    asio::async_write(socket_, asio::buffer(wbuf_),
                      [this](const boost::system::error_code& ec, std::size_t) {
                        writing_ = false;
                        wbuf_.clear();
                        if (state_ == State::kClosed) return;
                        if (ec) {
                          lost("write: " + ec.message());
                        } else if (!out_.empty()) {
                          flush();
                        } else if (state_ == State::kDisconnecting) {
                          closeSocket();
                        }
                      });
  }

  Shared& shared_;
  Role role_;
  unsigned index_;
  tcp::socket socket_;
  asio::steady_timer pingTimer_;
  asio::steady_timer sendTimer_;
  std::string uuid_;
  std::string topic_;
  State state_ = State::kConnecting;
  bool sending_ = false;
  bool writing_ = false;
  std::vector<char> rx_;
  std::size_t rxBegin_ = 0;
  std::size_t rxEnd_ = 0;
  std::string out_;
  std::string wbuf_;
  std::string payload_;
  // QoS 1 publisher
  std::uint16_t nextId_ = 0;
  std::uint64_t seq_ = 0;
  std::vector<Inflight> inflight_;
  std::bitset<65536> outstanding_;
  // QoS 0 publisher
  Clock::time_point t0_{};
  Clock::time_point end_{};
  std::uint64_t nextK_ = 0;
  std::int64_t maxSendLagNs_ = 0;
  // ack latencies (QoS 1 publisher) or delivery latencies (subscriber)
  std::vector<std::int64_t> latenciesNs_;
};

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;  // ms
};

Percentiles percentiles(std::vector<std::int64_t>& ns) {
  Percentiles p;
  if (ns.empty()) return p;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ns.size()))) - 1;
    return toMs(ns[std::min(i, ns.size() - 1)]);
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = toMs(ns.back());
  return p;
}

// Owns the io_contexts, their threads and the connections, in that destruction order reversed:
// connections go first, while their io_contexts still exist.
class Runner {
 public:
  explicit Runner(const Options& options) : shared_(options) {
    for (unsigned i = 0; i < options.threads; ++i) {
      ios_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(asio::make_work_guard(*ios_.back()));
    }
  }
  ~Runner() { join(); }
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  Shared& shared() { return shared_; }
  std::vector<std::unique_ptr<Connection>>& connections() { return connections_; }

  Connection& add(Connection::Role role, unsigned index) {
    asio::io_context& io = *ios_[connections_.size() % ios_.size()];
    connections_.push_back(std::make_unique<Connection>(io, shared_, role, index));
    return *connections_.back();
  }

  void run() {
    for (auto& io : ios_) {
      threads_.emplace_back([&io] { io->run(); });
    }
  }

  // Runs `f(connection)` on each connection's own thread.
  template <class F>
  void forEach(F f, std::size_t first = 0) {
    for (std::size_t i = first; i < connections_.size(); ++i) {
      Connection* c = connections_[i].get();
      asio::post(*ios_[i % ios_.size()], [c, f] { f(*c); });
    }
  }

  // Waits (bounded) until `done()` holds; false on timeout.
  template <class F>
  bool waitFor(Clock::duration limit, F done) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(kPollStep);
    }
    return true;
  }

  void disconnectAll() {
    forEach([](Connection& c) { c.disconnect(); });
    const auto n = static_cast<unsigned>(connections_.size());
    waitFor(2s, [&] { return shared_.closed.load() == n; });
  }

  void join() {
    for (auto& g : guards_) g.reset();
    for (auto& io : ios_) io->stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  Shared shared_;
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c == '\n' ? ' ' : c);
  }
  out.push_back('"');
  return out;
}

std::string commonFields(const Options& o) {
  return fmt::format("broker={} addr={} threads={}", o.label.empty() ? o.broker : o.label, o.broker,
                     o.threads);
}

// Brings every connection up; false (with the reason in shared.firstError) if any failed or the
// connect timeout passed.
bool connectAll(Runner& runner) {
  Shared& shared = runner.shared();
  const auto n = static_cast<unsigned>(runner.connections().size());
  runner.forEach([](Connection& c) { c.start(); });
  const bool settled = runner.waitFor(fromSeconds(shared.options.connectTimeout), [&] {
    return shared.ready.load() + shared.failed.load() >= n;
  });
  if (!settled) {
    shared.fail(fmt::format("only {} of {} connections up after {} s", shared.ready.load(), n,
                            shared.options.connectTimeout));
    return false;
  }
  return shared.failed.load() == 0;
}

void progress(const Options& o, const char* what, double t, std::uint64_t count, double rate) {
  if (o.progress)
    std::fprintf(stderr, "  %5.1fs %s=%llu (%.0f/s)\n", t, what,
                 static_cast<unsigned long long>(count), rate);
}

int runThroughput(const Options& o) {
  Runner runner(o);
  Shared& shared = runner.shared();
  for (unsigned i = 0; i < o.connections; ++i) runner.add(Connection::Role::kQos1Publisher, i);
  runner.run();
  const auto connectStart = Clock::now();
  if (!connectAll(runner)) {
    runner.disconnectAll();
    std::printf("RESULT mode=throughput %s status=failed connected=%u connections=%u error=%s\n",
                commonFields(o).c_str(), shared.ready.load(), o.connections,
                quoted(shared.error()).c_str());
    return kExitFailed;
  }
  const double connectSeconds = std::chrono::duration<double>(Clock::now() - connectStart).count();

  shared.measuring.store(true);
  const auto t0 = Clock::now();
  const auto end = t0 + fromSeconds(o.seconds);
  runner.forEach([t0, end](Connection& c) { c.begin(t0, end); });
  // Sample once a second for the progress log and the slowest second.
  std::uint64_t last = 0;
  auto lastAt = t0;
  double minSecondRate = -1;
  while (Clock::now() < end) {
    const auto nextSample = std::min(end, lastAt + 1s);
    std::this_thread::sleep_until(nextSample);
    const std::uint64_t now = shared.acked.load();
    const double dt = std::chrono::duration<double>(nextSample - lastAt).count();
    const double r = static_cast<double>(now - last) / dt;
    if (dt >= 0.5 && (minSecondRate < 0 || r < minSecondRate)) minSecondRate = r;
    progress(o, "acked", std::chrono::duration<double>(nextSample - t0).count(), now, r);
    last = now;
    lastAt = nextSample;
    if (shared.closed.load() == o.connections) break;  // everything died: stop early
  }
  const std::uint64_t acked = shared.acked.load();
  const std::uint64_t sentInWindow = shared.sent.load();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  shared.measuring.store(false);
  runner.forEach([](Connection& c) { c.stopSending(); });

  // Let outstanding publishes be acknowledged, so a broker that stalls shows as unacked > 0.
  const bool drained = runner.waitFor(fromSeconds(o.grace), [&] {
    return shared.acked.load() == shared.sent.load() || shared.closed.load() == o.connections;
  });
  const std::uint64_t sent = shared.sent.load();
  const std::uint64_t ackedTotal = shared.acked.load();
  runner.disconnectAll();
  runner.join();

  std::vector<std::int64_t> all;
  for (auto& c : runner.connections()) {
    auto& l = c->latencies();
    all.insert(all.end(), l.begin(), l.end());
  }
  const Percentiles p = percentiles(all);
  const bool ok = shared.errors.load() == 0 && drained;
  std::printf(
      "RESULT mode=throughput %s status=%s connections=%u window=%u payload=%zu seconds=%.2f "
      "acked=%llu rate=%.0f min_1s_rate=%.0f sent_in_window=%llu sent=%llu acked_total=%llu "
      "unacked=%llu ack_p50_ms=%.3f ack_p99_ms=%.3f ack_max_ms=%.3f connect_s=%.2f "
      "client_cpu_s=%.2f "
      "errors=%llu%s\n",
      commonFields(o).c_str(), ok ? "ok" : "errors", o.connections, o.window, o.payloadSize,
      seconds, static_cast<unsigned long long>(acked), static_cast<double>(acked) / seconds,
      std::max(0.0, minSecondRate), static_cast<unsigned long long>(sentInWindow),
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(ackedTotal),
      static_cast<unsigned long long>(sent - ackedTotal), p.p50, p.p99, p.max, connectSeconds,
      cpuSeconds(), static_cast<unsigned long long>(shared.errors.load()),
      shared.errors.load() ? (" error=" + quoted(shared.error())).c_str() : "");
  return ok ? 0 : kExitFailed;
}

int runLatency(const Options& o) {
  Runner runner(o);
  Shared& shared = runner.shared();
  // The subscriber is connection 0 and comes up (subscribed) before any publisher connects.
  runner.add(Connection::Role::kSubscriber, 0);
  runner.run();
  const unsigned total = o.publishers + 1;
  auto failed = [&](const char* stage) {
    runner.disconnectAll();
    std::printf(
        "RESULT mode=latency %s status=failed stage=%s connected=%u connections=%u error=%s\n",
        commonFields(o).c_str(), stage, shared.ready.load(), total, quoted(shared.error()).c_str());
    return kExitFailed;
  };
  if (!connectAll(runner)) return failed("subscribe");
  const std::size_t first = runner.connections().size();
  for (unsigned i = 0; i < o.publishers; ++i) runner.add(Connection::Role::kQos0Publisher, i);
  runner.forEach([](Connection& c) { c.start(); }, first);
  const bool settled = runner.waitFor(fromSeconds(o.connectTimeout), [&] {
    return shared.ready.load() + shared.failed.load() >= total;
  });
  if (!settled || shared.failed.load() > 0) {
    if (!settled) shared.fail("publishers did not all connect in time");
    return failed("connect");
  }

  const auto t0 = Clock::now() + 50ms;  // a moment for the begin posts to land
  const auto end = t0 + fromSeconds(o.seconds);
  runner.forEach([t0, end](Connection& c) { c.begin(t0, end); });
  auto lastAt = t0;
  std::uint64_t last = 0;
  while (Clock::now() < end) {
    const auto next = std::min(end, std::max(lastAt, Clock::now()) + 1s);
    std::this_thread::sleep_until(next);
    const std::uint64_t now = shared.received.load();
    progress(
        o, "received", std::chrono::duration<double>(next - t0).count(), now,
        static_cast<double>(now - last) / std::chrono::duration<double>(next - lastAt).count());
    last = now;
    lastAt = next;
    if (shared.closed.load() > 0) break;  // a connection broke: stop early, report below
  }
  runner.forEach([](Connection& c) { c.stopSending(); });
  // Deliveries still on the way: wait until all arrived or nothing new arrives for a while.
  const auto graceEnd = Clock::now() + fromSeconds(o.grace);
  std::uint64_t seen = shared.received.load();
  auto lastChange = Clock::now();
  while (Clock::now() < graceEnd && shared.received.load() < shared.sent.load()) {
    std::this_thread::sleep_for(kPollStep);
    const std::uint64_t r = shared.received.load();
    if (r != seen) {
      seen = r;
      lastChange = Clock::now();
    } else if (Clock::now() - lastChange > 1s) {
      break;  // dropped messages: they will not come
    }
  }
  const double seconds = std::chrono::duration<double>(end - t0).count();
  runner.disconnectAll();
  runner.join();

  std::int64_t maxLag = 0;
  for (auto& c : runner.connections()) maxLag = std::max(maxLag, c->maxSendLagNs());
  auto& lat = runner.connections()[0]->latencies();
  const std::uint64_t received = shared.received.load();
  const std::uint64_t sent = shared.sent.load();
  const Percentiles p = percentiles(lat);
  const bool ok = shared.errors.load() == 0;
  std::printf(
      "RESULT mode=latency %s status=%s publishers=%u target_rate=%.0f payload=%zu seconds=%.2f "
      "sent=%llu received=%llu missing=%llu send_rate=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
      "send_lag_max_ms=%.3f foreign=%llu client_cpu_s=%.2f errors=%llu%s\n",
      commonFields(o).c_str(), ok ? "ok" : "errors", o.publishers, o.rate, o.payloadSize, seconds,
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
      static_cast<unsigned long long>(sent > received ? sent - received : 0),
      static_cast<double>(sent) / seconds, p.p50, p.p99, p.max, toMs(maxLag),
      static_cast<unsigned long long>(shared.foreign.load()), cpuSeconds(),
      static_cast<unsigned long long>(shared.errors.load()),
      shared.errors.load() ? (" error=" + quoted(shared.error())).c_str() : "");
  return ok ? 0 : kExitFailed;
}

}  // namespace

int benchMain(int argc, char** argv) {
  CLI::App app{
      "tern-bench-mqtt: MQTT broker load client (throughput of QoS 1 acks, QoS 0 latency)"};
  Options o;
  std::string mode = "throughput";
  app.add_option("mode", mode, "throughput | latency")
      ->check(CLI::IsMember({"throughput", "latency"}))
      ->capture_default_str();
  app.add_option("--broker", o.broker, "Broker HOST:PORT")->capture_default_str();
  app.add_option("--label", o.label, "Name printed as broker=... [the address]");
  app.add_option("--threads", o.threads, "Event loop threads")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app.add_option("--connections,-c", o.connections, "throughput: publishing connections")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--window,-w", o.window, "throughput: QoS 1 publishes in flight per connection")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000u));
  app.add_option("--publishers,-p", o.publishers, "latency: publishing connections")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000u));
  app.add_option("--rate,-r", o.rate, "latency: total messages per second")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 10000000.0));
  app.add_option("--seconds,-d", o.seconds, "Measured duration [20 for throughput, 10 for latency]")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--topic-prefix", o.topicPrefix, "Publish topic is PREFIX<uuid>")
      ->capture_default_str();
  app.add_option("--filter", o.filter, "latency: the subscriber's topic filter")
      ->capture_default_str();
  app.add_option("--payload-size", o.payloadSize, "Payload bytes (JSON padded with blanks)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{16}, std::size_t{65536}));
  app.add_option("--connect-timeout", o.connectTimeout, "Seconds for all connections to come up")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--grace", o.grace, "Seconds to wait for outstanding acks/deliveries at the end")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  app.add_flag("--progress", o.progress, "Per-second progress on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  o.mode = mode == "latency" ? Mode::kLatency : Mode::kThroughput;
  if (o.seconds <= 0) o.seconds = o.mode == Mode::kLatency ? 10 : 20;
  std::signal(SIGPIPE, SIG_IGN);

  try {
    const core::HostPort hp = core::parseHostPort("--broker", o.broker);
    asio::io_context resolverIo;
    tcp::resolver resolver(resolverIo);
    const auto results = resolver.resolve(hp.host, std::to_string(hp.port));
    if (results.empty()) throw std::runtime_error("cannot resolve " + o.broker);
    o.endpoint = results.begin()->endpoint();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern-bench-mqtt: %s\n", e.what());
    return kExitUsage;
  }
  return o.mode == Mode::kLatency ? runLatency(o) : runThroughput(o);
}

}  // namespace tern::tools

int main(int argc, char** argv) {
  return tern::tools::benchMain(argc, argv);
}
