#pragma once
// The live feed behind WebSocket /api/v1/live: every record the store commits goes out, as JSON,
// to the clients subscribed to its device, one of its groups, or everything. Ingest never waits
// for a client: the writer hands each committed batch over under a short lock and returns, and
// the fan-out runs on the API's threads. A client that reads slower than data arrives gets the
// latest record per device instead of every record (coalesced), so what waits for it is bounded
// by the number of devices, never by the backlog. Independent of Beast: sessions are LiveSinks.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "storage/record.h"
#include "storage/store.h"

namespace tern::api {

// One committed record as live clients see it. The raw payload stays out (the message API has
// it): clients want values, and copying payloads on the ingest writer would cost it time.
struct LiveEvent {
  std::string device;
  std::int64_t serverTimeUs = 0;
  std::optional<std::int64_t> deviceTimeUs;
  std::string topic;
  std::string node;
  std::vector<storage::Field> fields;
};
using LiveEventPtr = std::shared_ptr<const LiveEvent>;
using LiveBatch = std::shared_ptr<const std::vector<LiveEventPtr>>;

// Keeps only the newest event of each device, ordered by those newest events.
void coalesceLatest(std::vector<LiveEventPtr>& events);

// What one client subscribed to, and the client messages that change it:
//   {"op":"subscribe"|"unsubscribe","devices":[id,...],"groups":["tag:value",...],
//    "keys":[key,...],"all":bool}
// A record matches when `all` is set, its device is subscribed, or the device is in a subscribed
// group (a tag key:value, as in GET /devices?tag=). With keys, only those fields are sent and
// records with none of them are skipped; without keys, every field is.
class LiveFilter {
 public:
  static constexpr std::size_t kMaxDevices = 10'000;
  static constexpr std::size_t kMaxGroups = 100;
  static constexpr std::size_t kMaxKeys = 1'000;

  // Applies one client message. Returns the reply: {"type":"subscribed",...} with the whole
  // subscription, or {"type":"error","detail":...} (the subscription is then unchanged).
  std::string apply(std::string_view text);
  // Group membership from the current device list (tags are set through the API, so the
  // session refreshes it now and then rather than on every record).
  void resolveGroups(const std::vector<storage::DeviceSummary>& devices);
  bool hasGroups() const { return !groups_.empty(); }
  bool matches(const LiveEvent& event) const;
  // The event as JSON, restricted to the subscribed keys; nullopt when it has none of them.
  std::optional<boost::json::object> render(const LiveEvent& event) const;
  // {"type":"records","coalesced":...,"records":[...]} for the events that render.
  std::string recordsMessage(std::span<const LiveEventPtr> events, bool coalesced) const;

 private:
  std::string subscribedMessage() const;

  bool all_ = false;
  std::set<std::string> devices_;
  std::set<std::pair<std::string, std::string>> groups_;  // (tag key, tag value)
  std::unordered_set<std::string> groupDevices_;
  std::set<std::string> keys_;
};

// A consumer of committed batches: each WebSocket session.
class LiveSink {
 public:
  virtual ~LiveSink() = default;
  // Called on the feed's fan-out strand with batches in commit order; must not block (a
  // session posts the batch to its own strand).
  virtual void deliver(const LiveBatch& batch) = 0;
};

struct LiveFeedOptions {
  // Events between the ingest writer and the fan-out; beyond it, latest per device.
  std::size_t inboxEvents = 20'000;
  // Events waiting for one client; beyond it, latest per device.
  std::size_t sessionEvents = 2'000;
  std::size_t maxSessions = 256;
  // How often a session re-checks its credentials (expiry, revocation) and group membership.
  std::int64_t recheckMs = 15'000;
};

struct LiveFeedStats {
  std::uint64_t sessions = 0;
  std::uint64_t published = 0;       // events handed over by ingest while someone listened
  std::uint64_t inboxOverflows = 0;  // times the inbox fell back to latest per device
};

class LiveFeed {
 public:
  explicit LiveFeed(LiveFeedOptions options = {});
  LiveFeed(const LiveFeed&) = delete;
  LiveFeed& operator=(const LiveFeed&) = delete;

  // Any thread (the ingest writer, right after a commit). Copies what clients may see; a no-op
  // while nobody is connected. Never blocks on a client.
  void publish(std::span<const storage::Record> records);

  // The HTTP server, at start and stop: where the fan-out runs. Unbind before the executor's
  // io_context goes away.
  void bind(boost::asio::any_io_executor executor);
  void unbind();

  // A new session; false when maxSessions are attached. detach() from its destructor.
  bool attach(std::weak_ptr<LiveSink> sink);
  void detach();

  const LiveFeedOptions& options() const { return options_; }
  LiveFeedStats stats() const;

 private:
  void flush();

  const LiveFeedOptions options_;
  std::atomic<std::size_t> sessions_{0};
  mutable std::mutex mutex_;
  std::optional<boost::asio::any_io_executor> strand_;
  bool flushPending_ = false;
  std::vector<LiveEventPtr> inbox_;
  // Inbox overflow: the latest event per device, until the next flush.
  std::unordered_map<std::string, LiveEventPtr> overflow_;
  std::vector<std::weak_ptr<LiveSink>> sinks_;
  std::uint64_t published_ = 0;
  std::uint64_t inboxOverflows_ = 0;
};

}  // namespace tern::api
