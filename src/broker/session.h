#pragma once
// What the broker keeps for one client id across connections: subscriptions, outgoing QoS 1/2
// messages in flight and queued, incoming QoS 2 packet ids, and (MQTT 5) its expiry and a
// delayed will. Deliveries come from any loop, so the state sits behind one per-session mutex
// (uncontended unless two loops deliver to the same client at once); the socket itself is only
// touched on the connection's own loop.
#include <atomic>
#include <boost/container/deque.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/message.h"
#include "codec/mqtt/packets.h"
#include "core/small_mutex.h"

namespace tern::broker {

class Connection;
class StateStore;
class TopicAcl;
struct StoredSession;

struct SessionLimits {
  std::uint32_t maxInflight = 64;
  std::uint32_t maxQueued = 1000;
  std::uint32_t maxPacketSize = 1024 * 1024;
  std::atomic<std::uint64_t>* sentCounter = nullptr;     // the broker's $SYS messages/sent
  std::atomic<std::uint64_t>* droppedCounter = nullptr;  // the broker's $SYS messages/dropped
  // Where a persistent session (expiry interval > 0) keeps its state; null: memory only.
  StateStore* store = nullptr;
};

// What the attached connection negotiated (MQTT 5 CONNECT properties; 3.1.1 keeps defaults).
struct ClientParams {
  codec::mqtt::ProtocolVersion version = codec::mqtt::ProtocolVersion::kV311;
  std::uint16_t receiveMaximum = 65535;  // the client's in-flight window for our QoS 1/2
  std::uint32_t maximumPacketSize = 0;   // 0 = none announced
  std::uint16_t topicAliasMaximum = 0;   // aliases we may use towards the client
  // What the logged-in identity may receive (null: everything). A session resumed under another
  // identity keeps nothing the new one may not read.
  std::shared_ptr<const TopicAcl> acl;
};

struct DeliveryCounters {
  std::uint64_t sent = 0;     // PUBLISH packets encoded for the wire
  std::uint64_t dropped = 0;  // over the queue limit, too large for the client, or expired
};

inline constexpr std::uint32_t kSessionNeverExpires = 0xFFFFFFFF;

class Session {
 public:
  // `expiryInterval`: seconds the session outlives its connection (0: it ends with it;
  // kSessionNeverExpires: 3.1.1 clean_session=false).
  // `limits` is kept by reference: it outlives the session (the broker's).
  Session(std::string clientId, std::uint32_t expiryInterval, const SessionLimits& limits);

  const std::string& clientId() const { return clientId_; }
  std::uint32_t expiryInterval() const;
  // Setting 0 ends the session's persistence (its stored state is deleted).
  void setExpiryInterval(std::uint32_t seconds);
  // Whether its state goes to the state store (a store is set and the expiry interval is > 0).
  bool persistent() const;
  // The session has ended (expired, or replaced by a clean start): its stored state is deleted
  // and nothing more is written for it.
  void discard();
  // At start, before any connection: the state a previous run stored. `expiresAtUs`: monotonic
  // deadline of the detached session (0: never).
  void restore(const StoredSession& stored, std::int64_t expiresAtUs);
  // Monotonic µs when a detached session ends (0: attached, or never).
  std::int64_t expiresAtUs() const;

  // From any thread: queue or send one message at min(message QoS, granted QoS), with the
  // identifiers of the subscriptions it matched (MQTT 5). Returns the state store sequence
  // number the copy must reach before the publish is acknowledged (0: nothing to wait for).
  std::uint64_t deliver(const MessagePtr& message, std::uint8_t grantedQos, bool retainFlag,
                        const std::vector<std::uint32_t>& subscriptionIds = {});

  // On the connection's loop. attach() drops queued and in-flight messages `params.acl` does not
  // allow, re-sends the other in-flight ones (DUP set) and PUBRELs, then moves queued messages
  // into the window. Deliveries the ACL does not allow are dropped from then on, also while
  // detached.
  void attach(const std::shared_ptr<Connection>& connection, const ClientParams& params);
  // Detaches only if `connection` is the attached one (a takeover may have replaced it).
  void detach(const Connection* connection);
  bool attachedTo(const Connection* connection) const;
  bool attached() const;

  // Acknowledgements from the client for our outgoing messages. False: unknown packet id.
  bool onPuback(std::uint16_t packetId);
  bool onPubrec(std::uint16_t packetId);  // encodes the PUBREL
  bool onPubcomp(std::uint16_t packetId);
  // MQTT 5: a PUBREC with an error reason code ends that QoS 2 flow without PUBREL.
  bool onPubrecError(std::uint16_t packetId);

  // Incoming QoS 2: returns false if the id is already known (a resend of a message we routed).
  bool beginIncomingQos2(std::uint16_t packetId);
  // Whether the first copy was committed (so a duplicate can get PUBREC at once).
  bool incomingQos2Committed(std::uint16_t packetId) const;
  // Returns the state store sequence number of the write that records it (0: none).
  std::uint64_t markIncomingQos2Committed(std::uint16_t packetId);
  // False when the id was not known.
  bool releaseIncomingQos2(std::uint16_t packetId);

  // Bytes waiting for the socket; called by the connection when it can write.
  void takeOutbox(std::string& out);

  // Subscriptions of this session (filter → options), to clean the tree up when it ends.
  // Returns whether the filter was already subscribed.
  bool addSubscription(const std::string& filter, const SubscriptionOptions& options);
  bool removeSubscription(const std::string& filter);
  std::map<std::string, SubscriptionOptions> subscriptions() const;

  // MQTT 5 will delay: a will waiting to be published at `dueUs` (monotonic) unless the session
  // is resumed first. takeWill() returns it (and forgets it) when due or when `force` is set.
  // A persistent session keeps it in the state store, so it outlives a restart of the server.
  void setPendingWill(MessagePtr will, std::int64_t dueUs);
  MessagePtr takeWill(std::int64_t nowUs, bool force);
  bool hasPendingWill() const;

  DeliveryCounters counters() const;
  std::size_t queued() const;
  std::size_t inflight() const;

 private:
  struct Outgoing {
    std::uint16_t packetId = 0;
    MessagePtr message;
    std::uint8_t qos = 1;
    bool retain = false;
    bool released = false;  // QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP
    std::vector<std::uint32_t> subscriptionIds;
    std::uint64_t storeId = 0;  // its row in the state store (0: not stored)
  };
  struct Queued {
    MessagePtr message;
    std::uint8_t qos = 0;
    bool retain = false;
    std::vector<std::uint32_t> subscriptionIds;
    std::uint64_t storeId = 0;
  };

  // What most sessions never need: an idle client with no subscriptions, no QoS 1/2 traffic
  // towards it and no QoS 2 from it has none of it. Allocated on first use, with mutex_ held.
  struct Extra {
    // boost's deque allocates nothing until used (std::deque allocates ~600 bytes when built).
    boost::container::deque<Outgoing> inflight;
    boost::container::deque<Queued> queue;
    std::unordered_map<std::uint16_t, bool> incomingQos2;  // id → committed
    std::map<std::string, SubscriptionOptions> subscriptions;
    std::unordered_map<std::string, std::uint16_t> topicAliases;  // outgoing, this connection
    MessagePtr pendingWill;
    std::int64_t willDueUs = 0;
  };

  // All of these run with mutex_ held.
  Extra& extraLocked();
  void countDropLocked();
  bool mayReceiveLocked(const Message& message) const;
  // Returns the state store sequence number of a new stored copy (0: none).
  std::uint64_t sendLocked(const MessagePtr& message, std::uint8_t qos, bool retain,
                           std::vector<std::uint32_t> subscriptionIds, std::uint64_t storeId = 0);
  void forgetStoredLocked(std::uint64_t storeId);
  // Encodes one PUBLISH for the attached client; false (nothing appended) when it is larger
  // than the client accepts.
  bool encodePublishLocked(const Message& message, std::uint8_t qos, bool retain, bool dup,
                           std::uint16_t packetId, const std::vector<std::uint32_t>& ids);
  void fillWindowLocked();
  std::uint16_t nextPacketIdLocked();
  void wakeConnectionLocked();
  bool eraseInflightLocked(std::uint16_t packetId, bool wantReleased, std::uint8_t qos);
  std::uint32_t windowLocked() const;

  const std::string clientId_;
  const SessionLimits& limits_;

  // The broker's registry entry: the connection that opened the session last (owned_ until it
  // closes or is taken over; the weak pointer may have expired meanwhile). Guarded by the
  // broker's registry mutex, not by mutex_; kept here rather than in a map of the broker's to
  // save a node per client.
  friend class Broker;
  std::weak_ptr<Connection> owner_;
  bool owned_ = false;

  // Four bytes instead of std::mutex's forty: there is one per client.
  mutable core::SmallMutex mutex_;
  std::uint32_t expiryInterval_;
  bool persistent_ = false;
  std::int64_t expiresAtUs_ = 0;
  std::weak_ptr<Connection> connection_;
  const Connection* connectionRaw_ = nullptr;
  ClientParams params_;
  std::string outbox_;
  std::uint32_t outboxQos0_ = 0;  // QoS 0 messages in outbox_, bounded by maxQueued
  bool wakePosted_ = false;
  std::uint16_t lastPacketId_ = 0;
  DeliveryCounters counters_;
  std::unique_ptr<Extra> extra_;
};

}  // namespace tern::broker
