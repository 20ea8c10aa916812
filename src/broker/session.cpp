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

Session::Session(std::string clientId, std::uint32_t expiryInterval, const SessionLimits& limits)
    : clientId_(std::move(clientId)),
      limits_(limits),
      expiryInterval_(expiryInterval),
      persistent_(limits.store != nullptr && expiryInterval != 0) {}

Session::Extra& Session::extraLocked() {
  if (!extra_) extra_ = std::make_unique<Extra>();
  return *extra_;
}

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
  Extra& x = extraLocked();
  x.subscriptions = stored.subscriptions;
  for (const StoredMessage& m : stored.messages) {
    if (m.packetId != 0) {
      // Sent before the restart: resent with DUP (or its PUBREL) when the client comes back.
      x.inflight.push_back(Outgoing{m.packetId, m.released ? nullptr : m.message, m.qos, m.retain,
                                    m.released, m.subscriptionIds, m.id});
      lastPacketId_ = std::max(lastPacketId_, m.packetId);
    } else {
      x.queue.push_back(Queued{m.message, m.qos, m.retain, m.subscriptionIds, m.id});
    }
  }
  for (std::uint16_t id : stored.incomingQos2) x.incomingQos2[id] = true;
  x.pendingWill = stored.will;
  x.willDueUs = stored.willDueUs;
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
  Extra& x = extraLocked();
  if (online && x.queue.empty() && x.inflight.size() < windowLocked()) {
    return sendLocked(message, qos, retainFlag, subscriptionIds);
  }
  if (x.queue.size() >= limits_.maxQueued) {
    auto qos0 =
        std::find_if(x.queue.begin(), x.queue.end(), [](const Queued& q) { return q.qos == 0; });
    if (qos0 == x.queue.end()) {
      countDropLocked();
      return 0;
    }
    x.queue.erase(qos0);
    countDropLocked();
  }
  // A persistent session's copy must be on disk before the publisher hears it was received.
  std::uint64_t seq = 0;
  std::uint64_t storeId = 0;
  if (persistent_) {
    storeId = limits_.store->nextMessageId();
    seq = limits_.store->addMessage(storeId, clientId_, *message, qos, retainFlag, subscriptionIds);
  }
  x.queue.push_back(Queued{message, qos, retainFlag, subscriptionIds, storeId});
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
    auto& aliases = extraLocked().topicAliases;
    if (auto it = aliases.find(message.topic); it != aliases.end()) {
      overrides.topicAlias = it->second;
      topic = {};
    } else if (aliases.size() < params_.topicAliasMaximum) {
      const auto alias = static_cast<std::uint16_t>(aliases.size() + 1);
      aliases.emplace(message.topic, alias);
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
    if (newAlias) extra_->topicAliases.erase(message.topic);
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
    extraLocked().inflight.push_back(
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
  const auto& inflight = extraLocked().inflight;
  for (;;) {
    ++lastPacketId_;
    if (lastPacketId_ == 0) lastPacketId_ = 1;
    bool used = std::any_of(inflight.begin(), inflight.end(),
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
  if (connectionRaw_ == nullptr || !extra_) return;
  Extra& x = *extra_;
  while (!x.queue.empty() && x.inflight.size() < windowLocked()) {
    Queued next = std::move(x.queue.front());
    x.queue.pop_front();
    sendLocked(next.message, next.qos, next.retain, std::move(next.subscriptionIds), next.storeId);
  }
}

void Session::attach(const std::shared_ptr<Connection>& connection, const ClientParams& params) {
  std::lock_guard lock(mutex_);
  connection_ = connection;
  connectionRaw_ = connection.get();
  params_ = params;
  expiresAtUs_ = 0;
  wakePosted_ = false;
  outbox_.clear();
  outboxQos0_ = 0;
  if (persistent_) limits_.store->putSession(clientId_, expiryInterval_, 0);
  if (!extra_) return;  // nothing kept: nothing to resend
  Extra& x = *extra_;
  x.topicAliases.clear();  // aliases live as long as one network connection
  if (x.pendingWill != nullptr) {
    x.pendingWill.reset();  // resumed before the will delay passed: the will is not sent
    if (persistent_) limits_.store->deleteWill(clientId_);
  }
  if (params_.acl != nullptr) {
    // Kept for an earlier login of this client id: what this one may not read is forgotten.
    const auto notAllowed = [this](const auto& m) {
      if (m.message == nullptr || mayReceiveLocked(*m.message)) return false;
      countDropLocked();
      forgetStoredLocked(m.storeId);
      return true;
    };
    x.inflight.erase(std::remove_if(x.inflight.begin(), x.inflight.end(), notAllowed),
                     x.inflight.end());
    x.queue.erase(std::remove_if(x.queue.begin(), x.queue.end(), notAllowed), x.queue.end());
  }
  for (auto it = x.inflight.begin(); it != x.inflight.end();) {
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
      it = x.inflight.erase(it);
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
  // Unsent bytes are dropped; what they carried is still in flight (Extra) and is resent on attach.
  outbox_.clear();
  outboxQos0_ = 0;
  wakePosted_ = false;
  if (extra_) extra_->topicAliases.clear();
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
  if (!extra_) return false;
  auto& inflight = extra_->inflight;
  auto it = std::find_if(inflight.begin(), inflight.end(),
                         [&](const Outgoing& o) { return o.packetId == packetId; });
  if (it == inflight.end() || it->qos != qos || it->released != wantReleased) return false;
  forgetStoredLocked(it->storeId);
  inflight.erase(it);
  fillWindowLocked();
  return true;
}

bool Session::onPuback(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  return eraseInflightLocked(packetId, false, 1);
}

bool Session::onPubrec(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  if (!extra_) return false;
  auto& inflight = extra_->inflight;
  auto it = std::find_if(inflight.begin(), inflight.end(),
                         [&](const Outgoing& o) { return o.packetId == packetId; });
  if (it == inflight.end() || it->qos != 2) return false;
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
  return extraLocked().incomingQos2.emplace(packetId, false).second;
}

bool Session::incomingQos2Committed(std::uint16_t packetId) const {
  std::lock_guard lock(mutex_);
  if (!extra_) return false;
  auto it = extra_->incomingQos2.find(packetId);
  return it != extra_->incomingQos2.end() && it->second;
}

std::uint64_t Session::markIncomingQos2Committed(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  if (!extra_) return 0;
  auto it = extra_->incomingQos2.find(packetId);
  if (it == extra_->incomingQos2.end()) return 0;
  it->second = true;
  // After a restart, a resent PUBLISH with this id is then known as a duplicate (exactly once).
  return persistent_ ? limits_.store->putIncomingQos2(clientId_, packetId) : 0;
}

bool Session::releaseIncomingQos2(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  if (!extra_ || extra_->incomingQos2.erase(packetId) == 0) return false;
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
  return !extraLocked().subscriptions.insert_or_assign(filter, options).second;
}

bool Session::removeSubscription(const std::string& filter) {
  std::lock_guard lock(mutex_);
  if (!extra_ || extra_->subscriptions.erase(filter) == 0) return false;
  if (persistent_) limits_.store->deleteSubscription(clientId_, filter);
  return true;
}

std::map<std::string, SubscriptionOptions> Session::subscriptions() const {
  std::lock_guard lock(mutex_);
  if (!extra_) return {};
  return extra_->subscriptions;
}

void Session::setPendingWill(MessagePtr will, std::int64_t dueUs) {
  std::lock_guard lock(mutex_);
  Extra& x = extraLocked();
  x.pendingWill = std::move(will);
  x.willDueUs = dueUs;
  // Kept with the session, so that a restart (or a crash) in the delay does not lose it.
  if (persistent_ && x.pendingWill != nullptr) {
    limits_.store->putWill(clientId_, *x.pendingWill, x.willDueUs);
  }
}

MessagePtr Session::takeWill(std::int64_t nowUs, bool force) {
  std::lock_guard lock(mutex_);
  if (!extra_ || !extra_->pendingWill || (!force && nowUs < extra_->willDueUs)) return nullptr;
  if (persistent_) limits_.store->deleteWill(clientId_);
  return std::move(extra_->pendingWill);
}

bool Session::hasPendingWill() const {
  std::lock_guard lock(mutex_);
  return extra_ && extra_->pendingWill != nullptr;
}

DeliveryCounters Session::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::size_t Session::queued() const {
  std::lock_guard lock(mutex_);
  return extra_ ? extra_->queue.size() : 0;
}

std::size_t Session::inflight() const {
  std::lock_guard lock(mutex_);
  return extra_ ? extra_->inflight.size() : 0;
}

}  // namespace tern::broker
