#include "broker/broker.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <future>
#include <thread>

#include "broker/connection.h"
#include "core/time.h"

namespace tern::broker {

namespace asio = boost::asio;

Broker::Broker(net::EventLoopPool& pool, core::MqttConfig config, ingest::Pipeline* pipeline,
               const ingest::Normalizer* normalizer)
    : pool_(pool),
      config_(std::move(config)),
      pipeline_(pipeline),
      normalizer_(normalizer),
      listener_(pool, "mqtt",
                [this](net::AcceptedConnection accepted) { onAccept(std::move(accepted)); }) {
  listener_.setProxyProtocol(config_.proxyProtocol);
}

Broker::~Broker() = default;

void Broker::start() {
  startedUs_ = core::monotonicMicros();
  listener_.start(config_.listen);
  if (config_.sysInterval > 0) {
    sysTimer_ = std::make_unique<asio::steady_timer>(pool_.loop(0));
    asio::post(pool_.loop(0), [this] {
      publishSys();
      scheduleSys();
    });
  }
}

void Broker::stopAccepting() {
  stopping_ = true;
  listener_.stop();
  if (sysTimer_) {
    std::promise<void> done;
    auto future = done.get_future();
    asio::post(pool_.loop(0), [this, &done] {
      sysTimer_->cancel();
      done.set_value();
    });
    future.wait_for(std::chrono::seconds(2));
  }
}

void Broker::shutdown(std::chrono::milliseconds timeout) {
  stopping_ = true;
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(connectionsMutex_);
    for (auto& [raw, weak] : connections_) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
  }
  for (auto& connection : open) {
    asio::post(connection->executor(),
               [connection] { connection->closeFromBroker("server shutting down", false); });
  }
  open.clear();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (openConnections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

SessionLimits Broker::sessionLimits() const {
  return SessionLimits{config_.maxInflight, config_.maxQueued, config_.maxPacketSize,
                       const_cast<std::atomic<std::uint64_t>*>(&messagesSent_),
                       const_cast<std::atomic<std::uint64_t>*>(&messagesDropped_)};
}

void Broker::onAccept(net::AcceptedConnection accepted) {
  if (stopping_) return;
  if (openConnections_.load() >= config_.maxConnections) {
    spdlog::warn("mqtt: refusing connection from {}: max_connections ({}) reached",
                 accepted.remoteAddress, config_.maxConnections);
    boost::system::error_code ec;
    accepted.socket.close(ec);
    return;
  }
  openConnections_.fetch_add(1);
  connectionsTotal_.fetch_add(1, std::memory_order_relaxed);
  // The socket already belongs to its loop; build and start the connection there.
  auto executor = accepted.socket.get_executor();
  asio::post(executor, [this, a = std::move(accepted)]() mutable {
    auto connection = std::make_shared<Connection>(*this, std::move(a.socket),
                                                   std::move(a.remoteAddress),
                                                   std::move(a.initialBytes));
    {
      std::lock_guard lock(connectionsMutex_);
      connections_[connection.get()] = connection;
    }
    connection->start();
  });
}

void Broker::connectionClosed(const Connection* connection) {
  {
    std::lock_guard lock(connectionsMutex_);
    connections_.erase(connection);
  }
  openConnections_.fetch_sub(1);
}

void Broker::route(const MessagePtr& message) {
  if (message->retain) retained_.set(message);
  thread_local std::vector<Match> matches;
  matches.clear();
  subscriptions_.match(message->topic, matches);
  // Subscribers get the message with RETAIN cleared: it is live, not a retained replay.
  for (const Match& match : matches) match.session->deliver(message, match.qos, false);
  matches.clear();
}

std::shared_ptr<Session> Broker::openSession(const std::string& clientId, bool cleanSession,
                                             const std::shared_ptr<Connection>& connection,
                                             bool& sessionPresent) {
  std::shared_ptr<Session> session;
  std::shared_ptr<Session> discarded;
  {
    std::lock_guard lock(sessionsMutex_);
    auto it = sessions_.find(clientId);
    if (it != sessions_.end()) {
      auto owner = owners_.find(it->second.get());
      if (owner != owners_.end()) {
        if (auto old = owner->second.lock(); old && old != connection) {
          spdlog::info("mqtt: client '{}' connected again; closing its previous connection",
                       clientId);
          asio::post(old->executor(), [old] {
            old->closeFromBroker("taken over by a new connection with the same client id", true);
          });
        }
        owners_.erase(owner);
      }
      if (cleanSession || it->second->cleanSession()) {
        discarded = std::move(it->second);
        sessions_.erase(it);
      } else {
        session = it->second;
      }
    }
    sessionPresent = session != nullptr;
    if (!session) {
      session = std::make_shared<Session>(clientId, cleanSession, sessionLimits());
      sessions_[clientId] = session;
    }
    owners_[session.get()] = connection;
  }
  if (discarded) {
    for (const auto& [filter, qos] : discarded->subscriptions()) {
      subscriptions_.unsubscribe(discarded.get(), filter);
    }
  }
  return session;
}

void Broker::closeSession(const std::shared_ptr<Session>& session, const Connection* connection) {
  session->detach(connection);
  bool remove = false;
  {
    std::lock_guard lock(sessionsMutex_);
    auto owner = owners_.find(session.get());
    if (owner != owners_.end() && owner->second.lock().get() == connection) owners_.erase(owner);
    if (session->cleanSession()) {
      auto it = sessions_.find(session->clientId());
      if (it != sessions_.end() && it->second == session) {
        sessions_.erase(it);
        remove = true;
      }
    }
  }
  if (remove) {
    for (const auto& [filter, qos] : session->subscriptions()) {
      subscriptions_.unsubscribe(session.get(), filter);
    }
  }
}

void Broker::subscribe(const std::shared_ptr<Session>& session, const std::string& filter,
                       std::uint8_t qos) {
  session->addSubscription(filter, qos);
  subscriptions_.subscribe(session, filter, qos);
}

void Broker::unsubscribe(const std::shared_ptr<Session>& session, const std::string& filter) {
  if (session->removeSubscription(filter)) subscriptions_.unsubscribe(session.get(), filter);
}

void Broker::deliverRetained(const std::shared_ptr<Session>& session, const std::string& filter,
                             std::uint8_t qos) {
  for (const MessagePtr& message : retained_.matching(filter)) {
    session->deliver(message, qos, true);
  }
}

BrokerStats Broker::stats() const {
  BrokerStats s;
  s.clientsConnected = static_cast<std::uint64_t>(std::max<std::int64_t>(0, clientsConnected_.load()));
  s.connectionsTotal = connectionsTotal_.load();
  s.messagesReceived = messagesReceived_.load();
  s.messagesSent = messagesSent_.load();
  s.messagesDropped = messagesDropped_.load();
  s.messagesIngested = messagesIngested_.load();
  s.protocolErrors = protocolErrors_.load();
  s.readPauses = readPauses_.load();
  s.subscriptions = subscriptions_.size();
  s.retained = retained_.size();
  s.uptimeSeconds = startedUs_ == 0 ? 0 : (core::monotonicMicros() - startedUs_) / 1'000'000;
  return s;
}

void Broker::publishSys() {
  BrokerStats s = stats();
  auto publish = [this](const std::string& topic, std::string payload) {
    auto message = std::make_shared<Message>();
    message->topic = "$SYS/broker/" + topic;
    message->payload = std::move(payload);
    message->retain = true;
    route(message);
  };
  publish("version", std::string("tern ") + TERN_VERSION);
  publish("uptime", std::to_string(s.uptimeSeconds) + " seconds");
  publish("clients/connected", std::to_string(s.clientsConnected));
  publish("clients/total", std::to_string(s.connectionsTotal));
  publish("messages/received", std::to_string(s.messagesReceived));
  publish("messages/sent", std::to_string(s.messagesSent));
  publish("messages/dropped", std::to_string(s.messagesDropped));
  publish("messages/stored", std::to_string(s.messagesIngested));
  publish("subscriptions/count", std::to_string(s.subscriptions));
  publish("retained messages/count", std::to_string(s.retained));
}

void Broker::scheduleSys() {
  if (stopping_) return;
  sysTimer_->expires_after(std::chrono::seconds(config_.sysInterval));
  sysTimer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    publishSys();
    scheduleSys();
  });
}

}  // namespace tern::broker
