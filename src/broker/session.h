#pragma once
// What the broker keeps for one client id across connections: subscriptions, outgoing QoS 1/2
// messages in flight and queued, incoming QoS 2 packet ids. Deliveries come from any loop, so
// the state sits behind one per-session mutex (uncontended unless two loops deliver to the same
// client at once); the socket itself is only touched on the connection's own loop.
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "broker/message.h"

namespace tern::broker {

class Connection;

struct SessionLimits {
  std::uint32_t maxInflight = 64;
  std::uint32_t maxQueued = 1000;
  std::uint32_t maxPacketSize = 1024 * 1024;
  std::atomic<std::uint64_t>* sentCounter = nullptr;  // the broker's $SYS messages/sent
  std::atomic<std::uint64_t>* droppedCounter = nullptr;  // the broker's $SYS messages/dropped
};

struct DeliveryCounters {
  std::uint64_t sent = 0;  // PUBLISH packets encoded for the wire
  std::uint64_t dropped = 0;  // over the queue limit
};

class Session {
 public:
  Session(std::string clientId, bool cleanSession, SessionLimits limits);

  const std::string& clientId() const { return clientId_; }
  bool cleanSession() const { return cleanSession_; }

  // From any thread: queue or send one message at min(message QoS, granted QoS).
  void deliver(const MessagePtr& message, std::uint8_t grantedQos, bool retainFlag);

  // On the connection's loop. attach() re-sends in-flight messages (DUP set) and PUBRELs, then
  // moves queued messages into the window.
  void attach(const std::shared_ptr<Connection>& connection);
  // Detaches only if `connection` is the attached one (a takeover may have replaced it).
  void detach(const Connection* connection);
  bool attachedTo(const Connection* connection) const;

  // Acknowledgements from the client for our outgoing messages. False: unknown packet id.
  bool onPuback(std::uint16_t packetId);
  bool onPubrec(std::uint16_t packetId);  // encodes the PUBREL
  bool onPubcomp(std::uint16_t packetId);

  // Incoming QoS 2: returns false if the id is already known (a resend of a message we routed).
  bool beginIncomingQos2(std::uint16_t packetId);
  // Whether the first copy was committed (so a duplicate can get PUBREC at once).
  bool incomingQos2Committed(std::uint16_t packetId) const;
  void markIncomingQos2Committed(std::uint16_t packetId);
  void releaseIncomingQos2(std::uint16_t packetId);

  // Bytes waiting for the socket; called by the connection when it can write.
  void takeOutbox(std::string& out);

  // Subscriptions of this session (filter → granted QoS), to clean the tree up when it ends.
  void addSubscription(const std::string& filter, std::uint8_t qos);
  bool removeSubscription(const std::string& filter);
  std::map<std::string, std::uint8_t> subscriptions() const;

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
  };
  struct Queued {
    MessagePtr message;
    std::uint8_t qos = 0;
    bool retain = false;
  };

  // All of these run with mutex_ held.
  void countDropLocked();
  void sendLocked(const MessagePtr& message, std::uint8_t qos, bool retain);
  void fillWindowLocked();
  std::uint16_t nextPacketIdLocked();
  void wakeConnectionLocked();
  bool eraseInflightLocked(std::uint16_t packetId, bool wantReleased, std::uint8_t qos);

  const std::string clientId_;
  const bool cleanSession_;
  const SessionLimits limits_;

  mutable std::mutex mutex_;
  std::weak_ptr<Connection> connection_;
  const Connection* connectionRaw_ = nullptr;
  std::string outbox_;
  std::uint32_t outboxQos0_ = 0;  // QoS 0 messages in outbox_, bounded by maxQueued
  bool wakePosted_ = false;
  std::deque<Outgoing> inflight_;
  std::deque<Queued> queue_;
  std::uint16_t lastPacketId_ = 0;
  std::unordered_map<std::uint16_t, bool> incomingQos2_;  // id → committed
  std::map<std::string, std::uint8_t> subscriptions_;
  DeliveryCounters counters_;
};

}  // namespace tern::broker
