#pragma once
// The broker's durable state: persistent sessions (expiry, subscriptions, the QoS 1/2 messages
// queued or in flight for them, incoming QoS 2 ids) and retained messages, in a SQLite file of
// their own (`<data_dir>/broker.db`, WAL). It is one node's state and stays local even when the
// message store is PostgreSQL.
//
// Writes are queued (bounded; overloaded() asks callers to stop reading, as the ingest pipeline
// does) and one writer thread commits them in group commits. Each write returns a sequence
// number; whenDurable(seq) runs a callback once everything up to seq is committed, which is how
// a PUBACK/PUBREC waits for the copies queued for persistent sessions.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "broker/message.h"
#include "core/result.h"

struct sqlite3;

namespace tern::broker {

struct StateStoreOptions {
  std::string path;       // the database file
  bool syncFull = false;  // synchronous=FULL (storage.sync = "full"): survives power loss
  std::uint32_t queueCapacity = 100000;  // writes waiting before overloaded()
  std::uint32_t batchMs = 2;             // group commit: wait this long for more writes
};

// A message copy kept for one session, as restored at start.
struct StoredMessage {
  std::uint64_t id = 0;
  MessagePtr message;
  std::uint8_t qos = 1;
  bool retain = false;
  std::vector<std::uint32_t> subscriptionIds;
  std::uint16_t packetId = 0;  // 0: queued; else sent (in flight) with this id
  bool released = false;       // QoS 2: PUBREC received, PUBREL sent
};

struct StoredSession {
  std::string clientId;
  std::uint32_t expiryInterval = 0;
  // Wall-clock µs when the detached session ends; 0 when it was attached (or never expires).
  std::int64_t expiresAtWallUs = 0;
  std::map<std::string, SubscriptionOptions> subscriptions;
  std::vector<StoredMessage> messages;  // in delivery order
  std::vector<std::uint16_t> incomingQos2;
  // MQTT 5: a will held back by its delay when the client went away (null: none), and when it
  // is due (monotonic µs, converted at load).
  MessagePtr will;
  std::int64_t willDueUs = 0;
};

struct StoredState {
  std::vector<StoredSession> sessions;
  std::vector<MessagePtr> retained;
};

struct StateStoreStats {
  std::uint64_t writes = 0;
  std::uint64_t commits = 0;
  std::uint64_t commitFailures = 0;
  std::uint64_t queued = 0;
};

class StateStore {
 public:
  using Callback = std::function<void()>;

  // Opens (creating) the database. Throws std::runtime_error when it cannot (start-up only).
  explicit StateStore(StateStoreOptions options);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Reads everything back (before start()). Messages of expired messages are left to the
  // caller; message ids handed out afterwards are above every stored one.
  core::Result<StoredState> load();
  void start();
  // Commits everything queued, runs its callbacks, stops the writer. Idempotent.
  void stop();

  // Each returns the write's sequence number (see whenDurable). Never blocks.
  std::uint64_t putSession(const std::string& clientId, std::uint32_t expiryInterval,
                           std::int64_t expiresAtWallUs);
  // The session with its subscriptions, messages and incoming QoS 2 ids.
  std::uint64_t deleteSession(const std::string& clientId);
  std::uint64_t putSubscription(const std::string& clientId, const std::string& filter,
                                const SubscriptionOptions& options);
  std::uint64_t deleteSubscription(const std::string& clientId, const std::string& filter);
  std::uint64_t nextMessageId() { return nextMessageId_.fetch_add(1, std::memory_order_relaxed); }
  // `packetId` != 0: already sent with that id.
  std::uint64_t addMessage(std::uint64_t id, const std::string& clientId, const Message& message,
                           std::uint8_t qos, bool retain, const std::vector<std::uint32_t>& ids,
                           std::uint16_t packetId = 0);
  std::uint64_t markSent(std::uint64_t id, std::uint16_t packetId);
  std::uint64_t markReleased(std::uint64_t id);
  std::uint64_t deleteMessage(std::uint64_t id);
  std::uint64_t putIncomingQos2(const std::string& clientId, std::uint16_t packetId);
  std::uint64_t deleteIncomingQos2(const std::string& clientId, std::uint16_t packetId);
  // A delayed will, due at `dueUs` (monotonic; stored as wall time). One per session.
  std::uint64_t putWill(const std::string& clientId, const Message& will, std::int64_t dueUs);
  std::uint64_t deleteWill(const std::string& clientId);
  // Stores the topic's retained message, or clears it when the payload is empty.
  std::uint64_t setRetained(const Message& message);

  // Runs `callback` (on the writer thread, or at once on the caller's) when every write up to
  // `seq` is committed. seq 0 is always durable.
  void whenDurable(std::uint64_t seq, Callback callback);
  bool overloaded() const;
  // A one-shot callback for when the queue has drained to half; at once if not overloaded.
  void onDrain(Callback callback);
  StateStoreStats stats() const;

 private:
  enum class Kind : std::uint8_t {
    kPutSession,
    kDeleteSession,
    kPutSubscription,
    kDeleteSubscription,
    kAddMessage,
    kMarkSent,
    kMarkReleased,
    kDeleteMessage,
    kPutIncoming,
    kDeleteIncoming,
    kPutRetained,
    kDeleteRetained,
    kPutWill,
    kDeleteWill,
  };
  struct Op {
    Kind kind;
    std::uint64_t id = 0;
    std::string clientId{};
    std::string text{};     // topic or filter
    std::string payload{};  // message payload; subscription ids ("1,2") in `extra`
    std::string properties{};
    std::string extra{};
    std::int64_t a = 0;
    std::int64_t b = 0;
    std::int64_t c = 0;
  };
  std::uint64_t enqueue(Op op);
  void run();
  core::Status commit(const std::vector<Op>& ops);
  core::Status exec(const char* sql);

  StateStoreOptions options_;
  sqlite3* db_ = nullptr;
  std::atomic<std::uint64_t> nextMessageId_{1};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Op> queue_;
  std::uint64_t lastSeq_ = 0;       // handed out
  std::uint64_t committedSeq_ = 0;  // durable
  std::multimap<std::uint64_t, Callback> waiters_;
  std::vector<Callback> drainWaiters_;
  bool overloaded_ = false;
  bool stopping_ = false;
  StateStoreStats stats_;
  std::thread thread_;
};

}  // namespace tern::broker
