#include "broker/session.h"

#include <algorithm>
#include <boost/asio/post.hpp>

#include "broker/connection.h"
#include "broker/state_store.h"
#include "broker/topic_acl.h"
#include "codec/mqtt/codec.h"
#include "core/time.h"

namespace tern::broker {

namespace mqtt = codec::mqtt;

Session::Session(std::string clientId, std::uint32_t expiryInterval, SessionLimits limits)
    : clientId_(std::move(clientId)),
      limits_(limits),
      expiryInterval_(expiryInterval),
      persistent_(limits.store != nullptr && expiryInterval != 0) {}

std::uint32_t Session::expiryInterval() const {
  std::lock_guard lock(mutex_);
  return expiryInterval_;
}

void Session::setExpiryInterval(std::uint32_t seconds) {
  std::lock_guard lock(mutex_);
  expiryInterval_ = seconds;
  // The session now ends with its connection: nothing of it may come back after a restart.
  // (The other direction cannot happen: a session with interval 0 is never resumed.)
  if (persistent_ && seconds == 0) {
    persistent_ = false;
    limits_.store->deleteSession(clientId_);
  }
}

bool Session::persistent() const {
  std::lock_guard lock(mutex_);
  return persistent_;
}

void Session::discard() {
  std::lock_guard lock(mutex_);
  // Under the session mutex: a delivery racing with this either wrote before the delete (and
  // is deleted with it) or sees persistent_ false and writes nothing.
  if (!persistent_) return;
  persistent_ = false;
  limits_.store->deleteSession(clientId_);
}

void Session::restore(const StoredSession& stored, std::int64_t expiresAtUs) {
  std::lock_guard lock(mutex_);
  expiresAtUs_ = expiresAtUs;
  subscriptions_ = stored.subscriptions;
  for (const StoredMessage& m : stored.messages) {
    if (m.packetId != 0) {
      // Sent before the restart: resent with DUP (or its PUBREL) when the client comes back.
      inflight_.push_back(Outgoing{m.packetId, m.released ? nullptr : m.message, m.qos, m.retain,
                                   m.released, m.subscriptionIds, m.id});
      lastPacketId_ = std::max(lastPacketId_, m.packetId);
    } else {
      queue_.push_back(Queued{m.message, m.qos, m.retain, m.subscriptionIds, m.id});
    }
  }
  for (std::uint16_t id : stored.incomingQos2) incomingQos2_[id] = true;
  pendingWill_ = stored.will;
  willDueUs_ = stored.willDueUs;
}

void Session::forgetStoredLocked(std::uint64_t storeId) {
  if (storeId != 0 && persistent_) limits_.store->deleteMessage(storeId);
}

std::int64_t Session::expiresAtUs() const {
  std::lock_guard lock(mutex_);
  return expiresAtUs_;
}

std::uint64_t Session::deliver(const MessagePtr& message, std::uint8_t grantedQos, bool retainFlag,
                               const std::vector<std::uint32_t>& subscriptionIds) {
  std::uint8_t qos = std::min(message->qos, grantedQos);
  std::lock_guard lock(mutex_);
  // A subscription the attached identity may not hold is removed right after attach; this
  // catches deliveries racing with that from other loops.
  if (!mayReceiveLocked(*message)) return 0;
  bool online = connectionRaw_ != nullptr;
  if (qos == 0) {
    // QoS 0 is never kept for an offline client, and a slow reader loses QoS 0 first.
    if (!online || outboxQos0_ >= limits_.maxQueued) {
      countDropLocked();
      return 0;
    }
    sendLocked(message, 0, retainFlag, subscriptionIds);
    return 0;
  }
  if (online && queue_.empty() && inflight_.size() < windowLocked()) {
    return sendLocked(message, qos, retainFlag, subscriptionIds);
  }
  if (queue_.size() >= limits_.maxQueued) {
    auto qos0 =
        std::find_if(queue_.begin(), queue_.end(), [](const Queued& q) { return q.qos == 0; });
    if (qos0 == queue_.end()) {
      countDropLocked();
      return 0;
    }
    queue_.erase(qos0);
    countDropLocked();
  }
  // A persistent session's copy must be on disk before the publisher hears it was received.
  std::uint64_t seq = 0;
  std::uint64_t storeId = 0;
  if (persistent_) {
    storeId = limits_.store->nextMessageId();
    seq = limits_.store->addMessage(storeId, clientId_, *message, qos, retainFlag, subscriptionIds);
  }
  queue_.push_back(Queued{message, qos, retainFlag, subscriptionIds, storeId});
  return seq;
}

std::uint32_t Session::windowLocked() const {
  // MQTT 5 receive maximum: never more unacknowledged QoS 1/2 messages than the client allows.
  return std::min<std::uint32_t>(limits_.maxInflight, params_.receiveMaximum);
}

bool Session::mayReceiveLocked(const Message& message) const {
  return params_.acl == nullptr || params_.acl->mayReceive(message.topic);
}

void Session::countDropLocked() {
  ++counters_.dropped;
  // Dropping QoS 0 is allowed; doing it invisibly is not: the broker totals it for $SYS/health.
  if (limits_.droppedCounter != nullptr) {
    limits_.droppedCounter->fetch_add(1, std::memory_order_relaxed);
  }
}

bool Session::encodePublishLocked(const Message& message, std::uint8_t qos, bool retain, bool dup,
                                  std::uint16_t packetId, const std::vector<std::uint32_t>& ids) {
  const std::size_t before = outbox_.size();
  if (params_.version != mqtt::ProtocolVersion::kV5) {
    mqtt::encodePublish(message.topic, message.payload, qos, retain, dup, packetId, outbox_);
    if (outbox_.size() - before > limits_.maxPacketSize) {
      outbox_.resize(before);
      return false;
    }
    return true;
  }
  mqtt::PublishOverrides overrides;
  overrides.messageExpiryInterval = message.remainingExpiry(core::monotonicMicros());
  overrides.subscriptionIdentifiers = ids.empty() ? nullptr : &ids;
  std::string_view topic = message.topic;
  bool newAlias = false;
  if (params_.topicAliasMaximum > 0) {
    // Aliases are handed out first come, first served, and never reassigned: later messages on
    // a topic that has one go out with an empty topic name.
    if (auto it = topicAliases_.find(message.topic); it != topicAliases_.end()) {
      overrides.topicAlias = it->second;
      topic = {};
    } else if (topicAliases_.size() < params_.topicAliasMaximum) {
      const auto alias = static_cast<std::uint16_t>(topicAliases_.size() + 1);
      topicAliases_.emplace(message.topic, alias);
      overrides.topicAlias = alias;
      newAlias = true;
    }
  }
  mqtt::encodePublish5(topic, message.payload, qos, retain, dup, packetId, message.properties.get(),
                       &overrides, outbox_);
  std::uint32_t limit = limits_.maxPacketSize;
  if (params_.maximumPacketSize != 0) limit = std::min(limit, params_.maximumPacketSize);
  if (outbox_.size() - before > limit) {
    // [MQTT-3.1.2-25]: a packet above the client's maximum is not sent; the message is dropped
    // as if it had been delivered.
    outbox_.resize(before);
    if (newAlias) topicAliases_.erase(message.topic);
    return false;
  }
  return true;
}

std::uint64_t Session::sendLocked(const MessagePtr& message, std::uint8_t qos, bool retain,
                                  std::vector<std::uint32_t> subscriptionIds,
                                  std::uint64_t storeId) {
  // An expired message is not delivered (MQTT 5 message expiry).
  if (message->expired(core::monotonicMicros())) {
    countDropLocked();
    forgetStoredLocked(storeId);
    return 0;
  }
  std::uint16_t packetId = qos > 0 ? nextPacketIdLocked() : 0;
  if (!encodePublishLocked(*message, qos, retain, false, packetId, subscriptionIds)) {
    countDropLocked();
    forgetStoredLocked(storeId);
    return 0;
  }
  std::uint64_t seq = 0;
  if (qos > 0) {
    // Stored with its packet id, so that after a restart it is resent as the same PUBLISH (DUP).
    if (persistent_ && storeId == 0) {
      storeId = limits_.store->nextMessageId();
      seq = limits_.store->addMessage(storeId, clientId_, *message, qos, retain, subscriptionIds,
                                      packetId);
    } else if (persistent_) {
      limits_.store->markSent(storeId, packetId);
    }
    inflight_.push_back(
        Outgoing{packetId, message, qos, retain, false, std::move(subscriptionIds), storeId});
  } else {
    ++outboxQos0_;
  }
  ++counters_.sent;
  if (limits_.sentCounter != nullptr) limits_.sentCounter->fetch_add(1, std::memory_order_relaxed);
  wakeConnectionLocked();
  return seq;
}

std::uint16_t Session::nextPacketIdLocked() {
  for (;;) {
    ++lastPacketId_;
    if (lastPacketId_ == 0) lastPacketId_ = 1;
    bool used = std::any_of(inflight_.begin(), inflight_.end(),
                            [this](const Outgoing& o) { return o.packetId == lastPacketId_; });
    if (!used) return lastPacketId_;
  }
}

void Session::wakeConnectionLocked() {
  if (wakePosted_) return;
  auto connection = connection_.lock();
  if (!connection) return;
  wakePosted_ = true;
  boost::asio::post(connection->executor(), [connection] { connection->onSessionWake(); });
}

void Session::fillWindowLocked() {
  if (connectionRaw_ == nullptr) return;
  while (!queue_.empty() && inflight_.size() < windowLocked()) {
    Queued next = std::move(queue_.front());
    queue_.pop_front();
    sendLocked(next.message, next.qos, next.retain, std::move(next.subscriptionIds), next.storeId);
  }
}

void Session::attach(const std::shared_ptr<Connection>& connection, const ClientParams& params) {
  std::lock_guard lock(mutex_);
  connection_ = connection;
  connectionRaw_ = connection.get();
  params_ = params;
  topicAliases_.clear();  // aliases live as long as one network connection
  expiresAtUs_ = 0;
  if (pendingWill_ != nullptr) {
    pendingWill_.reset();  // resumed before the will delay passed: the will is not sent
    if (persistent_) limits_.store->deleteWill(clientId_);
  }
  wakePosted_ = false;
  outbox_.clear();
  outboxQos0_ = 0;
  if (persistent_) limits_.store->putSession(clientId_, expiryInterval_, 0);
  if (params_.acl != nullptr) {
    // Kept for an earlier login of this client id: what this one may not read is forgotten.
    const auto notAllowed = [this](const auto& m) {
      if (m.message == nullptr || mayReceiveLocked(*m.message)) return false;
      countDropLocked();
      forgetStoredLocked(m.storeId);
      return true;
    };
    inflight_.erase(std::remove_if(inflight_.begin(), inflight_.end(), notAllowed),
                    inflight_.end());
    queue_.erase(std::remove_if(queue_.begin(), queue_.end(), notAllowed), queue_.end());
  }
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    if (it->released) {
      if (params_.version == mqtt::ProtocolVersion::kV5) {
        mqtt::encodeAck5(mqtt::PacketType::kPubrel, it->packetId, mqtt::reason::kSuccess, nullptr,
                         outbox_);
      } else {
        mqtt::encodeAck(mqtt::PacketType::kPubrel, it->packetId, outbox_);
      }
    } else if (!encodePublishLocked(*it->message, it->qos, it->retain, true, it->packetId,
                                    it->subscriptionIds)) {
      // The new connection accepts smaller packets than the old one did.
      countDropLocked();
      forgetStoredLocked(it->storeId);
      it = inflight_.erase(it);
      continue;
    } else {
      ++counters_.sent;
    }
    ++it;
  }
  fillWindowLocked();
  if (!outbox_.empty()) wakeConnectionLocked();
}

void Session::detach(const Connection* connection) {
  std::lock_guard lock(mutex_);
  if (connectionRaw_ != connection) return;
  connection_.reset();
  connectionRaw_ = nullptr;
  // Unsent bytes are dropped; what they carried is still in inflight_ and is resent on attach.
  outbox_.clear();
  outboxQos0_ = 0;
  wakePosted_ = false;
  topicAliases_.clear();
  if (expiryInterval_ != 0 && expiryInterval_ != kSessionNeverExpires) {
    expiresAtUs_ = core::monotonicMicros() + std::int64_t{expiryInterval_} * 1'000'000;
  }
  if (persistent_) {
    // Wall time: the expiry clock keeps running while the server is down.
    const std::int64_t wallExpiry =
        expiryInterval_ == kSessionNeverExpires
            ? 0
            : core::nowMicros() + std::int64_t{expiryInterval_} * 1'000'000;
    limits_.store->putSession(clientId_, expiryInterval_, wallExpiry);
  }
}

bool Session::attachedTo(const Connection* connection) const {
  std::lock_guard lock(mutex_);
  return connectionRaw_ == connection;
}

bool Session::attached() const {
  std::lock_guard lock(mutex_);
  return connectionRaw_ != nullptr;
}

bool Session::eraseInflightLocked(std::uint16_t packetId, bool wantReleased, std::uint8_t qos) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const Outgoing& o) { return o.packetId == packetId; });
  if (it == inflight_.end() || it->qos != qos || it->released != wantReleased) return false;
  forgetStoredLocked(it->storeId);
  inflight_.erase(it);
  fillWindowLocked();
  return true;
}

bool Session::onPuback(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  return eraseInflightLocked(packetId, false, 1);
}

bool Session::onPubrec(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const Outgoing& o) { return o.packetId == packetId; });
  if (it == inflight_.end() || it->qos != 2) return false;
  it->released = true;
  it->message.reset();  // the payload is no longer needed once the receiver has it
  if (persistent_ && it->storeId != 0) limits_.store->markReleased(it->storeId);
  if (params_.version == mqtt::ProtocolVersion::kV5) {
    mqtt::encodeAck5(mqtt::PacketType::kPubrel, packetId, mqtt::reason::kSuccess, nullptr, outbox_);
  } else {
    mqtt::encodeAck(mqtt::PacketType::kPubrel, packetId, outbox_);
  }
  wakeConnectionLocked();
  return true;
}

bool Session::onPubrecError(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  return eraseInflightLocked(packetId, false, 2);
}

bool Session::onPubcomp(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  return eraseInflightLocked(packetId, true, 2);
}

bool Session::beginIncomingQos2(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  return incomingQos2_.emplace(packetId, false).second;
}

bool Session::incomingQos2Committed(std::uint16_t packetId) const {
  std::lock_guard lock(mutex_);
  auto it = incomingQos2_.find(packetId);
  return it != incomingQos2_.end() && it->second;
}

std::uint64_t Session::markIncomingQos2Committed(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  auto it = incomingQos2_.find(packetId);
  if (it == incomingQos2_.end()) return 0;
  it->second = true;
  // After a restart, a resent PUBLISH with this id is then known as a duplicate (exactly once).
  return persistent_ ? limits_.store->putIncomingQos2(clientId_, packetId) : 0;
}

bool Session::releaseIncomingQos2(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  if (incomingQos2_.erase(packetId) == 0) return false;
  if (persistent_) limits_.store->deleteIncomingQos2(clientId_, packetId);
  return true;
}

void Session::takeOutbox(std::string& out) {
  std::lock_guard lock(mutex_);
  wakePosted_ = false;
  out.append(outbox_);
  outbox_.clear();
  outboxQos0_ = 0;
}

bool Session::addSubscription(const std::string& filter, const SubscriptionOptions& options) {
  std::lock_guard lock(mutex_);
  if (persistent_) limits_.store->putSubscription(clientId_, filter, options);
  return !subscriptions_.insert_or_assign(filter, options).second;
}

bool Session::removeSubscription(const std::string& filter) {
  std::lock_guard lock(mutex_);
  if (subscriptions_.erase(filter) == 0) return false;
  if (persistent_) limits_.store->deleteSubscription(clientId_, filter);
  return true;
}

std::map<std::string, SubscriptionOptions> Session::subscriptions() const {
  std::lock_guard lock(mutex_);
  return subscriptions_;
}

void Session::setPendingWill(MessagePtr will, std::int64_t dueUs) {
  std::lock_guard lock(mutex_);
  pendingWill_ = std::move(will);
  willDueUs_ = dueUs;
  // Kept with the session, so that a restart (or a crash) in the delay does not lose it.
  if (persistent_ && pendingWill_ != nullptr) {
    limits_.store->putWill(clientId_, *pendingWill_, willDueUs_);
  }
}

MessagePtr Session::takeWill(std::int64_t nowUs, bool force) {
  std::lock_guard lock(mutex_);
  if (!pendingWill_ || (!force && nowUs < willDueUs_)) return nullptr;
  if (persistent_) limits_.store->deleteWill(clientId_);
  return std::move(pendingWill_);
}

bool Session::hasPendingWill() const {
  std::lock_guard lock(mutex_);
  return pendingWill_ != nullptr;
}

DeliveryCounters Session::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::size_t Session::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t Session::inflight() const {
  std::lock_guard lock(mutex_);
  return inflight_.size();
}

}  // namespace tern::broker
