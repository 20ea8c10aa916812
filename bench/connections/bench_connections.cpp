// tern-bench-connections: holds many idle MQTT connections open against one broker, to measure
// what a connection costs the broker (memory) and how fast it accepts them (connect rate).
//
//   tern-bench-connections --broker 127.0.0.1:1883 --connections 15000 --hold 60 --pid PID
//
// Each connection sends CONNECT (clean session, keepalive K), waits for CONNACK, then only
// PINGREQs every K/2 s (jittered) for `--hold` seconds. With `--pid`, the broker's resident set
// (VmRSS) is read before connecting, once every connection is up, and at the end of the hold.
// Prints one line `RESULT key=value ...` on stdout; progress and errors go to stderr. Every wait is
// bounded by --connect-timeout and --hold.
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codec/mqtt/codec.h"
#include "codec/mqtt/packets.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
namespace mqtt = tern::codec::mqtt;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string broker = "127.0.0.1:1883";
  std::string label;
  unsigned connections = 15000;
  double holdSeconds = 60;
  unsigned keepAlive = 60;
  unsigned inflightConnects = 200;  // connects started but not yet answered, at most
  double connectTimeout = 120;
  int pid = 0;
  unsigned protocolLevel = 4;
  tcp::endpoint endpoint;
};

struct Counters {
  unsigned started = 0;
  unsigned pending = 0;  // started, no CONNACK yet
  unsigned ready = 0;
  unsigned failed = 0;
  unsigned lostAfterReady = 0;
  std::uint64_t pings = 0;
  std::uint64_t pongs = 0;
  std::string firstError;
};

// Resident set of a process in KiB, or -1.
long rssKib(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

class IdleClient {
 public:
  IdleClient(asio::io_context& io, const Options& options, Counters& counters, unsigned index,
             std::function<void()> onSettled)
      : socket_(io),
        timer_(io),
        options_(options),
        counters_(counters),
        index_(index),
        onSettled_(std::move(onSettled)) {}

  void start() {
    ++counters_.started;
    ++counters_.pending;
    socket_.async_connect(options_.endpoint, [this](const boost::system::error_code& ec) {
      if (ec) return fail("connect: " + ec.message());
      mqtt::Connect connect;
      connect.protocolName = "MQTT";
      connect.protocolLevel = static_cast<std::uint8_t>(options_.protocolLevel);
      connect.cleanSession = true;
      connect.keepAlive = static_cast<std::uint16_t>(options_.keepAlive);
      connect.clientId = fmt::format("idle-{}", index_);
      mqtt::encodeConnect(connect, out_);
      write();
      read();
    });
  }

  bool ready() const { return state_ == State::kReady; }

  void close() {
    state_ = State::kClosed;
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  enum class State : std::uint8_t { kConnecting, kReady, kClosed };

  void fail(const std::string& why) {
    if (state_ == State::kClosed) return;
    const bool wasReady = state_ == State::kReady;
    if (counters_.firstError.empty()) counters_.firstError = fmt::format("#{}: {}", index_, why);
    close();
    if (wasReady) {
      ++counters_.lostAfterReady;
      return;
    }
    ++counters_.failed;
    --counters_.pending;
    onSettled_();
  }

  void write() {
    // Only CONNECT and PINGREQ are ever written, each far smaller than a socket buffer, and a
    // ping is sent only after the previous answer came: one write in flight at a time.
    auto buffer = std::make_shared<std::string>(std::move(out_));
    out_.clear();
    asio::async_write(socket_, asio::buffer(*buffer),
                      [this, buffer](const boost::system::error_code& ec, std::size_t) {
                        if (ec) fail("write: " + ec.message());
                      });
  }

  void read() {
    socket_.async_read_some(asio::buffer(rx_.data() + rxLen_, rx_.size() - rxLen_),
                            [this](const boost::system::error_code& ec, std::size_t n) {
                              if (ec) return fail("read: " + ec.message());
                              rxLen_ += n;
                              if (!consume()) return;
                              read();
                            });
  }

  // CONNACK (0x20, 2 or more bytes) first, then PINGRESPs (0xD0 0x00). False when closed.
  bool consume() {
    while (rxLen_ >= 2) {
      const std::size_t length = rx_[1];  // both packets are short: one length byte
      if (rx_[1] & 0x80) {
        fail("unexpected long packet");
        return false;
      }
      if (rxLen_ < 2 + length) return true;
      const std::uint8_t type = rx_[0];
      if (state_ == State::kConnecting) {
        const bool accepted = type == 0x20 && length >= 2 && rx_[3] == 0;
        if (!accepted) {
          fail(fmt::format("CONNACK refused (type 0x{:02x} code {})", type,
                           length >= 2 ? rx_[3] : 255));
          return false;
        }
        state_ = State::kReady;
        ++counters_.ready;
        --counters_.pending;
        onSettled_();
        armPing(true);
      } else if (type == 0xD0) {
        ++counters_.pongs;
      }
      std::memmove(rx_.data(), rx_.data() + 2 + length, rxLen_ - 2 - length);
      rxLen_ -= 2 + length;
    }
    return true;
  }

  void armPing(bool first) {
    if (options_.keepAlive == 0) return;
    // Half the keepalive, the first one jittered so the pings do not come in waves.
    const auto period = std::chrono::milliseconds(options_.keepAlive * 500);
    auto delay = period;
    if (first) {
      thread_local std::mt19937 rng(12345);
      delay = std::chrono::milliseconds(
          std::uniform_int_distribution<long>(1, static_cast<long>(period.count()))(rng));
    }
    timer_.expires_after(delay);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || state_ != State::kReady) return;
      mqtt::encodeEmpty(mqtt::PacketType::kPingreq, out_);
      ++counters_.pings;
      write();
      armPing(false);
    });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  const Options& options_;
  Counters& counters_;
  unsigned index_;
  std::function<void()> onSettled_;
  std::string out_;
  std::array<std::uint8_t, 64> rx_{};
  std::size_t rxLen_ = 0;
  State state_ = State::kConnecting;
};

void raiseFileLimit(unsigned wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int run(const Options& o) {
  raiseFileLimit(o.connections + 64);
  asio::io_context io(1);
  Counters counters;
  std::vector<std::unique_ptr<IdleClient>> clients;
  clients.reserve(o.connections);
  unsigned next = 0;

  // Keeps `inflightConnects` connects going until every client has started.
  std::function<void()> pump = [&] {
    while (next < o.connections && counters.pending < o.inflightConnects) {
      clients.push_back(std::make_unique<IdleClient>(io, o, counters, next, [&] { pump(); }));
      ++next;
      clients.back()->start();
    }
  };

  const long rssBefore = rssKib(o.pid);
  const auto t0 = Clock::now();
  asio::post(io, pump);
  // Connect phase: until every client is settled (ready or failed) or the timeout.
  const auto connectDeadline =
      t0 + std::chrono::milliseconds(static_cast<long>(o.connectTimeout * 1000));
  double lastReport = 0;
  while (Clock::now() < connectDeadline && counters.ready + counters.failed < o.connections) {
    io.run_for(std::chrono::milliseconds(100));
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (elapsed - lastReport >= 5) {
      lastReport = elapsed;
      std::fprintf(stderr, "# %.0f s: %u ready, %u failed\n", elapsed, counters.ready,
                   counters.failed);
    }
  }
  const double connectSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const unsigned connected = counters.ready;
  // Let the broker settle (allocations made right after CONNACK) before sampling.
  io.run_for(std::chrono::seconds(2));
  const long rssConnected = rssKib(o.pid);
  std::fprintf(stderr, "# %u connected in %.2f s; holding %.0f s\n", connected, connectSeconds,
               o.holdSeconds);

  const auto holdEnd =
      Clock::now() + std::chrono::milliseconds(static_cast<long>(o.holdSeconds * 1000));
  while (Clock::now() < holdEnd) io.run_for(std::chrono::milliseconds(200));
  const long rssHeld = rssKib(o.pid);
  const unsigned stillUp = counters.ready - counters.lostAfterReady;

  for (auto& client : clients) client->close();
  io.run_for(std::chrono::milliseconds(500));

  const double perConnBytes = (rssBefore > 0 && rssHeld > 0 && connected > 0)
                                  ? static_cast<double>(rssHeld - rssBefore) * 1024.0 / connected
                                  : -1;
  const bool ok = connected == o.connections && stillUp == connected;
  std::printf(
      "RESULT broker=%s status=%s connections=%u connected=%u failed=%u lost=%u "
      "connect_seconds=%.2f connect_rate=%.0f hold_seconds=%.0f pings=%llu pongs=%llu "
      "rss_before_kib=%ld rss_connected_kib=%ld rss_held_kib=%ld bytes_per_connection=%.0f "
      "error=%s\n",
      o.label.c_str(), ok ? "ok" : "failed", o.connections, connected, counters.failed,
      counters.lostAfterReady, connectSeconds, connected / std::max(connectSeconds, 1e-9),
      o.holdSeconds, static_cast<unsigned long long>(counters.pings),
      static_cast<unsigned long long>(counters.pongs), rssBefore, rssConnected, rssHeld,
      perConnBytes, counters.firstError.empty() ? "-" : counters.firstError.c_str());
  return ok ? 0 : kExitFailed;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Holds idle MQTT connections to measure a broker's cost per connection"};
  Options o;
  app.add_option("--broker", o.broker, "Broker HOST:PORT")->capture_default_str();
  app.add_option("--label", o.label, "Name printed as broker=... [the address]");
  app.add_option("--connections,-c", o.connections, "Connections to hold")->capture_default_str();
  app.add_option("--hold", o.holdSeconds, "Seconds to hold them once connected")
      ->capture_default_str();
  app.add_option("--keepalive", o.keepAlive, "MQTT keepalive seconds (pings every half)")
      ->capture_default_str();
  app.add_option("--inflight", o.inflightConnects, "Connects in progress at once, at most")
      ->capture_default_str();
  app.add_option("--connect-timeout", o.connectTimeout, "Seconds for all connections to come up")
      ->capture_default_str();
  app.add_option("--pid", o.pid, "Broker process id, to read its resident set size");
  app.add_option("--mqtt-version", o.protocolLevel, "4 (3.1.1) or 5")->check(CLI::IsMember({4, 5}));
  CLI11_PARSE(app, argc, argv);

  const auto colon = o.broker.rfind(':');
  if (colon == std::string::npos || o.connections == 0 || o.inflightConnects == 0) {
    std::fprintf(stderr, "bad --broker, --connections or --inflight\n");
    return kExitUsage;
  }
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    o.endpoint = *resolver.resolve(o.broker.substr(0, colon), o.broker.substr(colon + 1)).begin();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot resolve %s: %s\n", o.broker.c_str(), e.what());
    return kExitUsage;
  }
  if (o.label.empty()) o.label = o.broker;
  return run(o);
}
