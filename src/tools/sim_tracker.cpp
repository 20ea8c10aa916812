#include "tools/sim_tracker.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cmath>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "codec/trackers/util.h"
#include "core/logging.h"
#include "tools/tracker_frames/tracker_frames.h"

namespace tern::tools {

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr Clock::duration kConnectTimeout = 10s;
constexpr Clock::duration kAckTimeout = 10s;  // an answer later than this counts as missing
constexpr Clock::duration kGrace = 10s;       // wait for answers after the last position
constexpr Clock::duration kBackoffMin = 100ms;
constexpr Clock::duration kBackoffMax = 5s;
constexpr double kStartSpreadSeconds = 1.0;
// With --rate 0, protocols that do not answer positions still need some pace.
constexpr Clock::duration kUnackedPacing = 20ms;
// Concurrent TCP handshakes; more only overflows the server's accept backlog.
constexpr int kMaxConnecting = 256;
// Frames awaiting an answer before a device skips ticks instead of queueing without bound.
constexpr std::size_t kMaxInflight = 256;
constexpr std::size_t kMaxReceived = 64 * 1024;
constexpr int kErrorsLoggedAtWarn = 5;
constexpr double kEarthRadiusM = 6'371'000;
constexpr double kPi = 3.14159265358979323846;

std::mt19937& rng() {
  thread_local std::mt19937 engine{std::random_device{}()};
  return engine;
}

double uniform(double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng());
}
int uniformInt(int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng());
}

Clock::duration fromSeconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::int64_t utcNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// State every device reads; the counters are the result.
struct Shared {
  SimTrackerOptions options;
  tcp::endpoint endpoint;
  bool positionsAcked = true;  // the protocol answers every position
  std::optional<Clock::time_point> deadline;
  std::shared_ptr<spdlog::logger> log;
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> ackExpected{0};
  std::atomic<std::uint64_t> acked{0};
  std::atomic<std::uint64_t> mismatches{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> logins{0};
  std::atomic<std::uint64_t> heartbeats{0};
  std::atomic<int> connecting{0};
  std::atomic<int> errorsLogged{0};
  std::mutex latencyMutex;
  std::vector<std::uint32_t> latenciesUs;  // merged from the devices at their end
};

// A vehicle driving a road-like random walk: cruising at a road's speed with gentle bends and
// occasional turns, stopping now and then, and parking with the ignition off.
class Route {
 public:
  Route() {
    latitude_ = uniform(40.0, 56.0);
    longitude_ = uniform(-4.0, 24.0);
    heading_ = uniform(0.0, 360.0);
    odometerM_ = static_cast<double>(uniformInt(1'000'000, 200'000'000));
    target_ = pickRoadSpeed();
    satellites_ = uniformInt(6, 12);
  }

  DeviceFix next() {
    const Clock::time_point now = Clock::now();
    double dt = last_ ? std::chrono::duration<double>(now - *last_).count() : 0.0;
    dt = std::clamp(dt, 0.0, 60.0);
    last_ = now;
    if (parked_ > 0) {
      --parked_;
      speed_ = 0;
      ignition_ = parked_ == 0;  // off while parked, on again to drive away
    } else if (uniform(0, 1) < 0.02) {
      parked_ = uniformInt(3, 30);  // a stop: lights, delivery, parking
      speed_ = 0;
    } else {
      ignition_ = true;
      if (uniform(0, 1) < 0.1) target_ = pickRoadSpeed();
      speed_ += std::clamp(target_ - speed_, -12.0, 8.0) + uniform(-2, 2);
      speed_ = std::clamp(speed_, 0.0, 120.0);
      heading_ += uniform(0, 1) < 0.05 ? (uniform(0, 1) < 0.5 ? -90.0 : 90.0) : uniform(-5, 5);
      heading_ = std::fmod(heading_ + 360.0, 360.0);
    }
    const double distance = speed_ / 3.6 * dt;
    const double rad = heading_ * kPi / 180.0;
    latitude_ += distance * std::cos(rad) / kEarthRadiusM * 180.0 / kPi;
    longitude_ += distance * std::sin(rad) / (kEarthRadiusM * std::cos(latitude_ * kPi / 180.0)) *
                  180.0 / kPi;
    latitude_ = std::clamp(latitude_, -85.0, 85.0);
    if (longitude_ > 180.0) longitude_ -= 360.0;
    if (longitude_ < -180.0) longitude_ += 360.0;
    odometerM_ += distance;
    if (uniform(0, 1) < 0.05) satellites_ = std::clamp(satellites_ + uniformInt(-1, 1), 4, 14);

    DeviceFix fix;
    fix.timeUs = utcNowUs() / 1000 * 1000;
    fix.latitude = latitude_;
    fix.longitude = longitude_;
    fix.altitude = std::round(uniform(30, 60));
    fix.speedKmh = std::round(speed_);
    fix.course = std::round(heading_);
    if (fix.course >= 360) fix.course = 0;
    fix.satellites = satellites_;
    fix.valid = true;
    fix.ignition = ignition_;
    fix.odometerM = static_cast<std::uint64_t>(odometerM_);
    return fix;
  }

 private:
  static double pickRoadSpeed() {
    static constexpr std::array<double, 5> kSpeeds = {30, 50, 50, 80, 120};
    return kSpeeds[static_cast<std::size_t>(uniformInt(0, static_cast<int>(kSpeeds.size()) - 1))];
  }
  std::optional<Clock::time_point> last_;
  double latitude_ = 0;
  double longitude_ = 0;
  double heading_ = 0;
  double speed_ = 0;
  double target_ = 50;
  double odometerM_ = 0;
  int parked_ = 0;
  int satellites_ = 8;
  bool ignition_ = true;
};

// One simulated tracker: a state machine driven by completion handlers on one io_context, so it
// needs no locking. Handlers capture `this`; runSimTracker keeps every Device alive until its
// io_context has run out of work.
class Device {
 public:
  Device(asio::io_context& io, Shared& shared, std::uint64_t imei)
      : shared_(shared),
        socket_(io),
        ctrlTimer_(io),
        sendTimer_(io),
        ackTimer_(io),
        encoder_(makeTrackerEncoder(shared.options.protocol, imei)) {}

  void start(Clock::duration delay) {
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + delay, [this] { connect(); });
    if (shared_.deadline) {
      // A device that never gets connected must still notice the end of the run.
      arm(sendTimer_, sendSeq_, *shared_.deadline, [this] { stopSending(); });
    }
  }

  std::vector<std::uint32_t> takeLatencies() { return std::move(latenciesUs_); }

 private:
  enum class State : std::uint8_t { kIdle, kConnecting, kOnline, kDone };

  // A frame written and waiting for its answer.
  struct Pending {
    TrackerFrame frame;
    Clock::time_point sentAt;
  };

  bool deadlinePassed() const { return shared_.deadline && Clock::now() >= *shared_.deadline; }
  bool countReached() const {
    return shared_.options.count != 0 && produced_ >= shared_.options.count;
  }
  // Positions still owed an answer (sent on this connection or waiting to be resent).
  std::size_t unackedPositions() const {
    std::size_t n = resend_.size();
    for (const Pending& p : pending_) n += p.frame.kind == FrameKind::kPosition ? 1 : 0;
    return n;
  }

  // Waits on `timer`; a later arm or disarm of the same timer makes this wait a no-op.
  template <class F>
  void arm(asio::steady_timer& timer, std::uint32_t& seq, Clock::time_point at, F f) {
    timer.expires_at(at);
    const std::uint32_t mine = ++seq;
    timer.async_wait([this, &seq, mine, f](const boost::system::error_code& ec) {
      if (!ec && mine == seq && state_ != State::kDone) f();
    });
  }
  void disarm(asio::steady_timer& timer, std::uint32_t& seq) {
    ++seq;
    timer.cancel();
  }

  void connect() {
    if (deadlinePassed() && !sendingDone_) stopSending();
    if (state_ == State::kDone) return;
    if (sendingDone_ && (unackedPositions() == 0 || Clock::now() >= graceDeadline_)) {
      finish();
      return;
    }
    if (shared_.connecting.fetch_add(1) >= kMaxConnecting) {
      shared_.connecting.fetch_sub(1);
      arm(ctrlTimer_, ctrlSeq_, Clock::now() + fromSeconds(uniform(0.005, 0.025)),
          [this] { connect(); });
      return;
    }
    holdsSlot_ = true;
    if (attempted_) shared_.reconnects.fetch_add(1, std::memory_order_relaxed);
    attempted_ = true;
    state_ = State::kConnecting;
    const std::uint32_t gen = ++gen_;
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + kConnectTimeout,
        [this] { lost("connect timed out"); });
    socket_.async_connect(shared_.endpoint, [this, gen](const boost::system::error_code& ec) {
      if (gen != gen_) return;
      if (ec) {
        lost("connect: " + ec.message());
        return;
      }
      onConnected();
    });
  }

  void onConnected() {
    releaseSlot();
    disarm(ctrlTimer_, ctrlSeq_);
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    state_ = State::kOnline;
    backoff_ = kBackoffMin;
    startRead();
    if (auto login = encoder_->login()) {
      shared_.logins.fetch_add(1, std::memory_order_relaxed);
      send(std::move(*login), true);
    }
    // Positions the previous connection did not get answered go out again, in order.
    while (!resend_.empty()) {
      send(std::move(resend_.front()), false);
      resend_.pop_front();
    }
    if (!sendingDone_) {
      if (!sendScheduled_) {
        sendScheduled_ = true;
        // The first position lands at a random point of the first interval, so devices that
        // connected together do not report in lockstep.
        const double rate = shared_.options.rateSeconds;
        scheduleSend(Clock::now() +
                     (rate > 0 ? fromSeconds(uniform(0.0, rate)) : Clock::duration{}));
      } else if (shared_.options.rateSeconds <= 0) {
        scheduleSend(Clock::now());
      }
    }
    maybeFinish();
  }

  void scheduleSend(Clock::time_point at) {
    if (shared_.deadline && at > *shared_.deadline) at = *shared_.deadline;
    arm(sendTimer_, sendSeq_, at, [this] { onSendTick(); });
  }

  void onSendTick() {
    if (deadlinePassed()) {
      stopSending();
      return;
    }
    const bool paced = shared_.options.rateSeconds > 0;
    if (state_ != State::kOnline) {
      // Disconnected: a paced device skips the tick (the position is produced later, so
      // `count` still means positions delivered); an ACK-driven one resumes on reconnect.
      if (paced) scheduleSend(Clock::now() + fromSeconds(shared_.options.rateSeconds));
      return;
    }
    if (!paced && shared_.positionsAcked && !pending_.empty()) {
      return;  // the next position follows the answer (onAnswered)
    }
    if (pending_.size() < kMaxInflight) sendPosition();
    if (countReached()) {
      stopSending();
      return;
    }
    if (paced) {
      scheduleSend(Clock::now() + fromSeconds(shared_.options.rateSeconds * uniform(0.9, 1.1)));
    } else if (!shared_.positionsAcked) {
      scheduleSend(Clock::now() + kUnackedPacing);
    }
  }

  void sendPosition() {
    TrackerFrame position = encoder_->position(route_.next());
    ++produced_;
    shared_.sent.fetch_add(1, std::memory_order_relaxed);
    shared_.records.fetch_add(position.records, std::memory_order_relaxed);
    send(std::move(position), true);
    const unsigned every = shared_.options.heartbeatEvery;
    if (every != 0 && produced_ % every == 0) {
      if (auto heartbeat = encoder_->heartbeat()) {
        shared_.heartbeats.fetch_add(1, std::memory_order_relaxed);
        shared_.records.fetch_add(heartbeat->records, std::memory_order_relaxed);
        send(std::move(*heartbeat), true);
      }
    }
  }

  // Writes a frame; remembers it when an answer is owed. `fresh`: counted as owed now (a
  // resent position was counted when first sent).
  void send(TrackerFrame frame, bool fresh) {
    out_ += frame.bytes;
    if (frame.ack.kind != AckKind::kNone) {
      if (fresh) shared_.ackExpected.fetch_add(1, std::memory_order_relaxed);
      pending_.push_back({std::move(frame), Clock::now()});
      if (pending_.size() == 1) armAckTimer();
    }
    flush();
  }

  void armAckTimer() {
    if (pending_.empty()) {
      disarm(ackTimer_, ackSeq_);
      return;
    }
    arm(ackTimer_, ackSeq_, pending_.front().sentAt + kAckTimeout, [this] {
      if (state_ != State::kOnline || pending_.empty()) return;
      if (Clock::now() - pending_.front().sentAt < kAckTimeout) {
        armAckTimer();
        return;
      }
      shared_.timeouts.fetch_add(1, std::memory_order_relaxed);
      mismatch("no answer within 10 s");
    });
  }

  void stopSending() {
    if (sendingDone_) return;
    sendingDone_ = true;
    graceDeadline_ = Clock::now() + kGrace;
    arm(sendTimer_, sendSeq_, graceDeadline_, [this] { finish(); });
    // Unanswered positions get a last answered heartbeat behind them: the server answers in
    // order and only after committing, so its answer confirms everything before it arrived.
    if (!shared_.positionsAcked && state_ == State::kOnline) {
      if (auto heartbeat = encoder_->heartbeat();
          heartbeat && heartbeat->ack.kind != AckKind::kNone) {
        shared_.heartbeats.fetch_add(1, std::memory_order_relaxed);
        shared_.records.fetch_add(heartbeat->records, std::memory_order_relaxed);
        send(std::move(*heartbeat), true);
      }
    }
    maybeFinish();
  }

  // Done when nothing more will be sent and no answer is outstanding.
  void maybeFinish() {
    if (!sendingDone_ || state_ == State::kDone) return;
    if (state_ == State::kOnline ? pending_.empty() && out_.empty() && !writing_
                                 : unackedPositions() == 0) {
      finish();
    }
  }

  void finish() {
    if (state_ == State::kDone) return;
    state_ = State::kDone;
    ++gen_;
    releaseSlot();
    disarm(ctrlTimer_, ctrlSeq_);
    disarm(sendTimer_, sendSeq_);
    disarm(ackTimer_, ackSeq_);
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
  }

  void releaseSlot() {
    if (holdsSlot_) {
      holdsSlot_ = false;
      shared_.connecting.fetch_sub(1);
    }
  }

  void logProblem(const std::string& reason) {
    // The first few problems explain a failing run; thousands of devices repeating them would not.
    const bool loud =
        shared_.errorsLogged.fetch_add(1, std::memory_order_relaxed) < kErrorsLoggedAtWarn;
    shared_.log->log(loud ? spdlog::level::warn : spdlog::level::debug, "sim: device {}: {}",
                     encoder_->deviceId(), reason);
  }

  // A wrong or missing answer: the stream is out of step, so start over on a new connection.
  void mismatch(const std::string& reason) {
    shared_.mismatches.fetch_add(1, std::memory_order_relaxed);
    logProblem(reason);
    drop();
  }

  // The connection failed or broke: count it, and try again later unless there is nothing
  // left to do.
  void lost(const std::string& reason) {
    if (state_ == State::kDone) return;
    shared_.errors.fetch_add(1, std::memory_order_relaxed);
    logProblem(reason);
    drop();
  }

  void drop() {
    ++gen_;
    releaseSlot();
    closeSocket();
    state_ = State::kIdle;
    disarm(ctrlTimer_, ctrlSeq_);
    disarm(ackTimer_, ackSeq_);
    // Unanswered positions are resent after the next login; logins and heartbeats are not
    // (the next connection sends its own), so they are no longer owed.
    std::deque<TrackerFrame> again;
    for (Pending& p : pending_) {
      if (p.frame.kind == FrameKind::kPosition) {
        again.push_back(std::move(p.frame));
      } else {
        shared_.ackExpected.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    pending_.clear();
    for (TrackerFrame& f : resend_) again.push_back(std::move(f));
    resend_ = std::move(again);
    if (deadlinePassed() && !sendingDone_) stopSending();
    if (state_ == State::kDone) return;
    if (sendingDone_ && (resend_.empty() || Clock::now() >= graceDeadline_)) {
      finish();
      return;
    }
    const auto delay = backoff_;
    backoff_ = std::min(backoff_ * 2, kBackoffMax);
    arm(ctrlTimer_, ctrlSeq_, Clock::now() + delay, [this] { connect(); });
  }

  void flush() {
    if (writing_ || out_.empty() || state_ != State::kOnline) return;
    writing_ = true;
    std::swap(out_, wbuf_);
    out_.clear();
    const std::uint32_t gen = gen_;
    asio::async_write(socket_, asio::buffer(wbuf_),
                      [this, gen](const boost::system::error_code& ec, std::size_t) {
                        if (gen != gen_) return;
                        writing_ = false;
                        wbuf_.clear();
                        if (ec) {
                          lost("write: " + ec.message());
                        } else if (!out_.empty()) {
                          flush();
                        } else {
                          maybeFinish();
                        }
                      });
  }

  void startRead() {
    const std::uint32_t gen = gen_;
    socket_.async_read_some(asio::buffer(chunk_), [this, gen](const boost::system::error_code& ec,
                                                              std::size_t n) {
      if (gen != gen_) return;
      if (ec) {
        lost(ec == asio::error::eof ? "connection closed by the server" : "read: " + ec.message());
        return;
      }
      rx_.append(chunk_.data(), n);
      processIncoming();
      if (gen == gen_ && state_ == State::kOnline) startRead();
    });
  }

  // Answers arrive in the order of the frames that owe them.
  void processIncoming() {
    const std::uint32_t gen = gen_;
    std::size_t offset = 0;
    const std::int64_t now = utcNowUs();
    while (offset < rx_.size()) {
      const std::string_view rest = std::string_view(rx_).substr(offset);
      if (pending_.empty()) {
        mismatch("unexpected bytes from the server: " +
                 codec::trackers::toHex(rest.substr(0, std::min<std::size_t>(rest.size(), 32))));
        return;
      }
      std::size_t consumed = 0;
      const AckMatch match = matchAck(pending_.front().frame.ack, rest, now, consumed);
      if (match == AckMatch::kNeedMore) {
        if (rest.size() > kMaxReceived) {
          mismatch("answer too long");
          return;
        }
        break;
      }
      if (match == AckMatch::kMismatch) {
        const std::string& expected = pending_.front().frame.ack.bytes;
        mismatch(fmt::format(
            "answer {} does not match the expected {}",
            codec::trackers::toHex(rest.substr(0, std::min<std::size_t>(rest.size(), 48))),
            codec::trackers::toHex(expected)));
        return;
      }
      offset += consumed;
      onAnswered();
      if (gen != gen_ || state_ == State::kDone) return;
    }
    rx_.erase(0, offset);
    maybeFinish();
  }

  void onAnswered() {
    const auto latency = Clock::now() - pending_.front().sentAt;
    latenciesUs_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(latency).count(), UINT32_MAX)));
    pending_.pop_front();
    shared_.acked.fetch_add(1, std::memory_order_relaxed);
    armAckTimer();
    if (!sendingDone_ && shared_.options.rateSeconds <= 0 && pending_.empty()) {
      scheduleSend(Clock::now());
    }
  }

  Shared& shared_;
  tcp::socket socket_;
  asio::steady_timer ctrlTimer_;  // start delay, connect timeout, reconnect backoff
  asio::steady_timer sendTimer_;  // next position, then the grace period
  asio::steady_timer ackTimer_;   // the oldest outstanding answer's deadline
  std::unique_ptr<TrackerDeviceEncoder> encoder_;
  Route route_;
  std::deque<Pending> pending_;
  std::deque<TrackerFrame> resend_;  // positions to send again after the next login
  std::vector<std::uint32_t> latenciesUs_;
  std::string rx_;
  std::string out_;   // encoded, waiting for the current write to finish
  std::string wbuf_;  // being written
  std::array<char, 2048> chunk_{};
  Clock::time_point graceDeadline_{};
  Clock::duration backoff_ = kBackoffMin;
  std::uint64_t produced_ = 0;
  std::uint32_t gen_ = 0;  // bumped whenever the connection is torn down; stale handlers compare
  std::uint32_t ctrlSeq_ = 0;
  std::uint32_t sendSeq_ = 0;
  std::uint32_t ackSeq_ = 0;
  State state_ = State::kIdle;
  bool holdsSlot_ = false;
  bool attempted_ = false;
  bool sendScheduled_ = false;
  bool sendingDone_ = false;
  bool writing_ = false;
};

// Thousands of sockets need thousands of descriptors; the soft limit is often 1024.
void raiseFileLimit(unsigned devices, spdlog::logger& log) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = static_cast<rlim_t>(devices) + 64;
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= wanted) return;
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

double percentileMs(std::vector<std::uint32_t>& values, double fraction) {
  if (values.empty()) return 0;
  const auto index = static_cast<std::size_t>(
      std::min<double>(static_cast<double>(values.size() - 1),
                       std::ceil(fraction * static_cast<double>(values.size())) - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index),
                   values.end());
  return static_cast<double>(values[index]) / 1000.0;
}

}  // namespace

SimTrackerResult runSimTracker(const SimTrackerOptions& options) {
  if (!(options.rateSeconds >= 0)) {
    throw std::invalid_argument("sim: rate must be 0 or a positive number of seconds");
  }
  if (makeTrackerEncoder(options.protocol, options.imeiBase) == nullptr) {
    throw std::invalid_argument("sim: unknown protocol '" + options.protocol + "'");
  }
  if (options.imeiBase + options.devices > 999'999'999'999'999ULL) {
    throw std::invalid_argument("sim: IMEIs must stay within 15 digits");
  }
  Shared shared;
  shared.options = options;
  if (shared.options.port == 0) shared.options.port = trackerDefaultPort(options.protocol);
  shared.log = core::logger("sim");
  if (options.devices == 0) return {};
  // Positions that are answered drive --rate 0; the others are paced.
  shared.positionsAcked =
      makeTrackerEncoder(options.protocol, options.imeiBase)->position(DeviceFix{}).ack.kind !=
      AckKind::kNone;
  raiseFileLimit(options.devices, *shared.log);
  shared.endpoint = resolve(options.host, shared.options.port);

  const unsigned threads = std::max(1u, options.threads);
  std::vector<std::unique_ptr<asio::io_context>> loops;
  for (unsigned i = 0; i < threads; ++i) loops.push_back(std::make_unique<asio::io_context>(1));
  if (options.durationSeconds > 0) {
    shared.deadline = Clock::now() + fromSeconds(options.durationSeconds);
  }

  std::vector<std::unique_ptr<Device>> devices;
  devices.reserve(options.devices);
  for (unsigned i = 0; i < options.devices; ++i) {
    asio::io_context& io = *loops[i % threads];
    devices.push_back(std::make_unique<Device>(io, shared, options.imeiBase + i));
    // Connection starts are spread over the first second so the server is not stampeded.
    const auto delay = options.devices == 1 ? Clock::duration::zero()
                                            : fromSeconds(uniform(0.0, kStartSpreadSeconds));
    Device* device = devices.back().get();
    asio::post(io, [device, delay] { device->start(delay); });
  }
  shared.log->info("sim: {} {} devices -> {}:{}, {}, {} thread(s)", options.devices,
                   options.protocol, options.host, shared.options.port,
                   options.rateSeconds > 0 ? fmt::format("every {}s", options.rateSeconds)
                                           : std::string("as fast as answered"),
                   threads);

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&loops, i] { loops[i]->run(); });
  loops[0]->run();
  for (auto& worker : workers) worker.join();

  std::vector<std::uint32_t> latencies;
  for (auto& device : devices) {
    std::vector<std::uint32_t> own = device->takeLatencies();
    latencies.insert(latencies.end(), own.begin(), own.end());
  }
  // Devices go before their io_contexts: their sockets and timers belong to those contexts.
  devices.clear();

  SimTrackerResult result;
  result.sent = shared.sent.load();
  result.records = shared.records.load();
  result.ackExpected = shared.ackExpected.load();
  result.acked = shared.acked.load();
  result.ackMismatches = shared.mismatches.load();
  result.ackTimeouts = shared.timeouts.load();
  result.errors = shared.errors.load();
  result.reconnects = shared.reconnects.load();
  result.logins = shared.logins.load();
  result.heartbeats = shared.heartbeats.load();
  result.ackLatencyP50Ms = percentileMs(latencies, 0.50);
  result.ackLatencyP99Ms = percentileMs(latencies, 0.99);
  result.ackLatencyMaxMs = percentileMs(latencies, 1.0);
  return result;
}

std::string formatSimTrackerSummary(const SimTrackerResult& result, double elapsedSeconds) {
  const double rate = elapsedSeconds > 0 ? static_cast<double>(result.sent) / elapsedSeconds : 0.0;
  return fmt::format(
      "positions={} records={} ack_expected={} acked={} mismatches={} (timeouts={}) errors={} "
      "reconnects={} logins={} heartbeats={} elapsed={:.2f}s rate={:.1f}/s ack_p50={:.2f}ms "
      "ack_p99={:.2f}ms ack_max={:.2f}ms",
      result.sent, result.records, result.ackExpected, result.acked, result.ackMismatches,
      result.ackTimeouts, result.errors, result.reconnects, result.logins, result.heartbeats,
      elapsedSeconds, rate, result.ackLatencyP50Ms, result.ackLatencyP99Ms, result.ackLatencyMaxMs);
}

bool simTrackerSucceeded(const SimTrackerResult& result) {
  return result.ackMismatches == 0 && result.errors == 0 && result.acked == result.ackExpected;
}

}  // namespace tern::tools
