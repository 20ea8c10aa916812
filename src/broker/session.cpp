#include "broker/session.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "broker/connection.h"
#include "codec/mqtt/codec.h"

namespace tern::broker {

namespace mqtt = codec::mqtt;

Session::Session(std::string clientId, bool cleanSession, SessionLimits limits)
    : clientId_(std::move(clientId)), cleanSession_(cleanSession), limits_(limits) {}

void Session::deliver(const MessagePtr& message, std::uint8_t grantedQos, bool retainFlag) {
  std::uint8_t qos = std::min(message->qos, grantedQos);
  std::lock_guard lock(mutex_);
  bool online = connectionRaw_ != nullptr;
  if (qos == 0) {
    // QoS 0 is never kept for an offline client, and a slow reader loses QoS 0 first.
    if (!online || outboxQos0_ >= limits_.maxQueued) {
      countDropLocked();
      return;
    }
    sendLocked(message, 0, retainFlag);
    return;
  }
  if (online && queue_.empty() && inflight_.size() < limits_.maxInflight) {
    sendLocked(message, qos, retainFlag);
    return;
  }
  if (queue_.size() >= limits_.maxQueued) {
    auto qos0 = std::find_if(queue_.begin(), queue_.end(), [](const Queued& q) { return q.qos == 0; });
    if (qos0 == queue_.end()) {
      countDropLocked();
      return;
    }
    queue_.erase(qos0);
    countDropLocked();
  }
  queue_.push_back(Queued{message, qos, retainFlag});
}

void Session::countDropLocked() {
  ++counters_.dropped;
  // Dropping QoS 0 is allowed; doing it invisibly is not: the broker totals it for $SYS/health.
  if (limits_.droppedCounter != nullptr) {
    limits_.droppedCounter->fetch_add(1, std::memory_order_relaxed);
  }
}

void Session::sendLocked(const MessagePtr& message, std::uint8_t qos, bool retain) {
  // Never send a client a packet larger than it can have agreed to receive from us.
  if (message->topic.size() + message->payload.size() + 9 > limits_.maxPacketSize) {
    countDropLocked();
    return;
  }
  std::uint16_t packetId = 0;
  if (qos > 0) {
    packetId = nextPacketIdLocked();
    inflight_.push_back(Outgoing{packetId, message, qos, retain, false});
  } else {
    ++outboxQos0_;
  }
  mqtt::encodePublish(message->topic, message->payload, qos, retain, false, packetId, outbox_);
  ++counters_.sent;
  if (limits_.sentCounter != nullptr) limits_.sentCounter->fetch_add(1, std::memory_order_relaxed);
  wakeConnectionLocked();
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
  while (!queue_.empty() && inflight_.size() < limits_.maxInflight) {
    Queued next = std::move(queue_.front());
    queue_.pop_front();
    sendLocked(next.message, next.qos, next.retain);
  }
}

void Session::attach(const std::shared_ptr<Connection>& connection) {
  std::lock_guard lock(mutex_);
  connection_ = connection;
  connectionRaw_ = connection.get();
  wakePosted_ = false;
  outbox_.clear();
  outboxQos0_ = 0;
  for (const Outgoing& o : inflight_) {
    if (o.released) {
      mqtt::encodeAck(mqtt::PacketType::kPubrel, o.packetId, outbox_);
    } else {
      mqtt::encodePublish(o.message->topic, o.message->payload, o.qos, o.retain, true, o.packetId,
                          outbox_);
      ++counters_.sent;
    }
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
}

bool Session::attachedTo(const Connection* connection) const {
  std::lock_guard lock(mutex_);
  return connectionRaw_ == connection;
}

bool Session::eraseInflightLocked(std::uint16_t packetId, bool wantReleased, std::uint8_t qos) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const Outgoing& o) { return o.packetId == packetId; });
  if (it == inflight_.end() || it->qos != qos || it->released != wantReleased) return false;
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
  mqtt::encodeAck(mqtt::PacketType::kPubrel, packetId, outbox_);
  wakeConnectionLocked();
  return true;
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

void Session::markIncomingQos2Committed(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  auto it = incomingQos2_.find(packetId);
  if (it != incomingQos2_.end()) it->second = true;
}

void Session::releaseIncomingQos2(std::uint16_t packetId) {
  std::lock_guard lock(mutex_);
  incomingQos2_.erase(packetId);
}

void Session::takeOutbox(std::string& out) {
  std::lock_guard lock(mutex_);
  wakePosted_ = false;
  out.append(outbox_);
  outbox_.clear();
  outboxQos0_ = 0;
}

void Session::addSubscription(const std::string& filter, std::uint8_t qos) {
  std::lock_guard lock(mutex_);
  subscriptions_[filter] = qos;
}

bool Session::removeSubscription(const std::string& filter) {
  std::lock_guard lock(mutex_);
  return subscriptions_.erase(filter) > 0;
}

std::map<std::string, std::uint8_t> Session::subscriptions() const {
  std::lock_guard lock(mutex_);
  return subscriptions_;
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
