#include "broker/broker.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "broker/connection.h"
#include "broker/state_store.h"
#include "codec/mqtt/packets.h"
#include "core/time.h"
#include "ingest/normalizer.h"
#include "ingest/pipeline.h"
#include "net/tls_context.h"

namespace tern::broker {

namespace asio = boost::asio;

Broker::Broker(net::EventLoopPool& pool, core::MqttConfig config, ingest::Pipeline* pipeline,
               const ingest::Normalizer* normalizer, StateStore* state)
    : pool_(pool),
      config_(std::move(config)),
      pipeline_(pipeline),
      normalizer_(normalizer),
      state_(state),
      listener_(pool, "mqtt", net::StreamKind::kTcp,
                [this](net::AcceptedStream accepted) { onAccept(std::move(accepted)); }),
      wsListener_(pool, "mqtt-ws", net::StreamKind::kWebSocket,
                  [this](net::AcceptedStream accepted) { onAccept(std::move(accepted)); }) {
  sessionLimits_ = SessionLimits{config_.maxInflight, config_.maxQueued, config_.maxPacketSize,
                                 &messagesSent_,      &messagesDropped_, state_};
  for (std::size_t i = 0; i < pool_.size(); ++i) {
    wheels_.push_back(std::make_unique<net::DeadlineWheel<Connection>>(pool_.loop(i)));
    pollers_.push_back(std::make_unique<net::FdPoller>(pool_.loop(i)));
  }
  listener_.setProxyProtocol(config_.proxyProtocol);
  wsListener_.setProxyProtocol(config_.proxyProtocol);
  wsListener_.setWebSocket(webSocketOptions());
}

Broker::~Broker() = default;

net::WebSocketOptions Broker::webSocketOptions() {
  // "mqttv3.1" is what clients of the older protocol level (and some libraries) ask for.
  return net::WebSocketOptions{kWebSocketPath, {"mqtt", "mqttv3.1"}};
}

void Broker::restoreState() {
  auto loaded = state_->load();
  if (!loaded) throw std::runtime_error(loaded.error().message);
  for (const MessagePtr& message : loaded->retained) retained_.set(message);
  retained_.setStateStore(state_);  // after the restore: those are on disk already
  const std::int64_t nowWall = core::nowMicros();
  const std::int64_t nowMono = core::monotonicMicros();
  std::size_t restored = 0;
  std::size_t expired = 0;
  std::size_t messages = 0;
  std::lock_guard lock(sessionsMutex_);
  for (const StoredSession& stored : loaded->sessions) {
    std::int64_t expiresAt = 0;
    if (stored.expiryInterval != kSessionNeverExpires) {
      // A session that was attached when the server went down starts its expiry clock now.
      std::int64_t deadline = stored.expiresAtWallUs;
      if (deadline == 0) {
        deadline = nowWall + std::int64_t{stored.expiryInterval} * 1'000'000;
        state_->putSession(stored.clientId, stored.expiryInterval, deadline);
      }
      if (deadline <= nowWall && stored.will == nullptr) {
        state_->deleteSession(stored.clientId);
        ++expired;
        continue;
      }
      // One that ended with a will still held back is ended by the expiry timer, which
      // publishes the will first.
      expiresAt = nowMono + std::max<std::int64_t>(0, deadline - nowWall);
    }
    auto session =
        std::make_shared<Session>(stored.clientId, stored.expiryInterval, sessionLimits());
    session->restore(stored, expiresAt);
    for (const auto& [filter, options] : stored.subscriptions) {
      subscriptions_.subscribe(session, filter, options);
    }
    if (expiresAt != 0 || stored.will != nullptr) timed_[session.get()] = session;
    const std::string_view key = session->clientId();  // the session's own copy (see sessions_)
    sessions_.emplace(key, std::move(session));
    messages += stored.messages.size();
    ++restored;
  }
  spdlog::info(
      "mqtt: restored {} sessions ({} queued or in-flight messages) and {} retained messages; {} "
      "sessions expired while the server was down",
      restored, messages, loaded->retained.size(), expired);
  state_->start();
}

void Broker::whenStateDurable(std::uint64_t seq, std::function<void()> callback) {
  if (state_ == nullptr || seq == 0) {
    callback();
    return;
  }
  state_->whenDurable(seq, std::move(callback));
}

void Broker::start() {
  startedUs_ = core::monotonicMicros();
  // Before any listener accepts: a client that comes back finds its session.
  if (state_ != nullptr) restoreState();
  const bool tls = !config_.tlsCert.empty();
  std::shared_ptr<boost::asio::ssl::context> tlsContext;
  if (tls) {
    tlsContext = net::makeTlsServerContext(
        net::TlsServerOptions{config_.tlsCert, config_.tlsKey, config_.tlsCa,
                              config_.tlsRequireClientCert},
        "mqtt.");
  }
  for (auto& wheel : wheels_) {
    asio::post(wheel->executor(), [wheel = wheel.get()] { wheel->start(); });
  }
  auto onStream = [this](net::AcceptedStream accepted) { onAccept(std::move(accepted)); };
  listener_.start(config_.listen);
  if (tls) {
    tlsListener_ =
        std::make_unique<net::StreamListener>(pool_, "mqtt-tls", net::StreamKind::kTls, onStream);
    tlsListener_->setProxyProtocol(config_.proxyProtocol);
    tlsListener_->setTls(tlsContext);
    tlsListener_->start(config_.tlsListen);
  }
  if (config_.wsListen) wsListener_.start(*config_.wsListen);
  if (config_.wssListen) {
    wssListener_ = std::make_unique<net::StreamListener>(pool_, "mqtt-wss",
                                                         net::StreamKind::kTlsWebSocket, onStream);
    wssListener_->setProxyProtocol(config_.proxyProtocol);
    wssListener_->setTls(tlsContext);
    wssListener_->setWebSocket(webSocketOptions());
    wssListener_->start(*config_.wssListen);
  }
  if (config_.sysInterval > 0) {
    sysTimer_ = std::make_unique<asio::steady_timer>(pool_.loop(0));
    asio::post(pool_.loop(0), [this] {
      publishSys();
      scheduleSys();
    });
  }
  expiryTimer_ = std::make_unique<asio::steady_timer>(pool_.loop(0));
  asio::post(pool_.loop(0), [this] { scheduleExpiry(); });
}

void Broker::stopAccepting() {
  stopping_ = true;
  listener_.stop();
  if (tlsListener_) tlsListener_->stop();
  wsListener_.stop();
  if (wssListener_) wssListener_->stop();
  if (sysTimer_ || expiryTimer_) {
    // Shared: if the wait below times out, the posted handler still has a live promise.
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    asio::post(pool_.loop(0), [this, done] {
      if (sysTimer_) sysTimer_->cancel();
      if (expiryTimer_) expiryTimer_->cancel();
      done->set_value();
    });
    future.wait_for(std::chrono::seconds(2));
  }
}

void Broker::shutdown(std::chrono::milliseconds timeout) {
  stopping_ = true;
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(connectionsMutex_);
    for (const auto& connection : connections_) open.push_back(connection);
  }
  for (auto& connection : open) {
    asio::post(connection->executor(), [connection] {
      connection->closeFromBroker("server shutting down", false,
                                  codec::mqtt::reason::kServerShuttingDown);
    });
  }
  open.clear();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (openConnections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

const SessionLimits& Broker::sessionLimits() const {
  return sessionLimits_;
}

void Broker::acceptWebSocketUpgrade(net::HttpUpgrade upgrade) {
  // After stopAccepting the listener refuses (closes) it.
  wsListener_.acceptUpgrade(std::move(upgrade));
}

void Broker::setAuthenticator(Authenticator* authenticator) {
  authenticator_ = authenticator;
  if (authenticator_ != nullptr) {
    authenticator_->onRevoked(
        [this](std::vector<std::string> grants) { closeRevoked(std::move(grants)); });
  }
}

void Broker::closeRevoked(std::vector<std::string> grants) {
  if (grants.empty()) return;
  // Revocations are rare: every connection checks its own grant, on its own loop.
  auto shared = std::make_shared<const std::vector<std::string>>(std::move(grants));
  std::lock_guard lock(connectionsMutex_);
  for (const auto& connection : connections_) {
    asio::post(connection->executor(),
               [connection, shared] { connection->closeIfRevoked(*shared); });
  }
}

void Broker::onAccept(net::AcceptedStream accepted) {
  if (stopping_) {
    accepted.stream.close();
    return;
  }
  if (openConnections_.load() >= config_.maxConnections) {
    spdlog::warn("mqtt: refusing connection from {}: max_connections ({}) reached",
                 accepted.remoteAddress, config_.maxConnections);
    accepted.stream.close();
    return;
  }
  // The stream already belongs to its loop; build and start the connection there.
  auto executor = accepted.stream.get_executor();
  const std::size_t loop = loopIndexOf(executor);
  if (loop == std::string::npos) {
    spdlog::error(
        "mqtt: refusing connection from {}: its stream is not on an event loop of the "
        "broker",
        accepted.remoteAddress);
    accepted.stream.close();
    return;
  }
  openConnections_.fetch_add(1);
  connectionsTotal_.fetch_add(1, std::memory_order_relaxed);
  asio::post(executor, [this, loop, a = std::move(accepted)]() mutable {
    auto connection = std::make_shared<Connection>(
        *this, *wheels_[loop], std::move(a.stream), std::move(a.remoteAddress),
        std::move(a.initialBytes), std::move(a.certificateCn));
    {
      std::lock_guard lock(connectionsMutex_);
      connections_.insert(connection);
    }
    connection->start(*pollers_[loop]);
  });
}

std::size_t Broker::loopIndexOf(const asio::any_io_executor& executor) {
  const asio::execution_context* context = &asio::query(executor, asio::execution::context);
  for (std::size_t i = 0; i < wheels_.size(); ++i) {
    if (context == &static_cast<asio::execution_context&>(pool_.loop(i))) return i;
  }
  return std::string::npos;
}

void Broker::connectionClosed(const Connection* connection) {
  {
    std::lock_guard lock(connectionsMutex_);
    if (auto it = connections_.find(connection); it != connections_.end()) connections_.erase(it);
  }
  openConnections_.fetch_sub(1);
}

std::size_t Broker::route(const MessagePtr& message, const Session* publisher,
                          std::uint64_t* durableSeq) {
  std::uint64_t seq = 0;
  if (message->retain) seq = retained_.set(message);
  thread_local std::vector<Delivery> deliveries;
  deliveries.clear();
  subscriptions_.match(message->topic, publisher, deliveries);
  // Subscribers get the message with RETAIN cleared (it is live, not a retained replay) unless
  // they asked for retain as published (MQTT 5).
  for (const Delivery& d : deliveries) {
    seq = std::max(seq, d.session->deliver(message, d.qos, d.retainAsPublished && message->retain,
                                           d.subscriptionIds));
  }
  // Writes are committed in sequence order: waiting for the highest covers them all.
  if (durableSeq != nullptr) *durableSeq = std::max(*durableSeq, seq);
  const std::size_t count = deliveries.size();
  deliveries.clear();
  return count;
}

void Broker::publishWill(const MessagePtr& will) {
  route(will);
  if (normalizer_ != nullptr && pipeline_ != nullptr) {
    if (auto record = normalizer_->normalize(will->topic, will->payload, core::nowMicros())) {
      countIngested();
      pipeline_->submit(std::move(*record), nullptr);
    }
  }
}

void Broker::dropSubscriptions(const Session& session) {
  for (const auto& [filter, options] : session.subscriptions()) {
    subscriptions_.unsubscribe(&session, filter);
  }
}

std::shared_ptr<Session> Broker::openSession(const std::string& clientId, bool cleanStart,
                                             std::uint32_t expiryInterval,
                                             const std::shared_ptr<Connection>& connection,
                                             bool& sessionPresent) {
  std::shared_ptr<Session> session;
  std::shared_ptr<Session> discarded;
  {
    std::lock_guard lock(sessionsMutex_);
    auto it = sessions_.find(clientId);
    if (it != sessions_.end()) {
      Session& existing = *it->second;
      if (existing.owned_) {
        if (auto old = existing.owner_.lock(); old && old != connection) {
          spdlog::info("mqtt: client '{}' connected again; closing its previous connection",
                       clientId);
          asio::post(old->executor(), [old] {
            old->closeFromBroker("taken over by a new connection with the same client id", true,
                                 codec::mqtt::reason::kSessionTakenOver);
          });
        }
        existing.owner_.reset();
        existing.owned_ = false;
      }
      const std::int64_t expiresAt = it->second->expiresAtUs();
      const bool expired = expiresAt != 0 && core::monotonicMicros() >= expiresAt;
      if (cleanStart || expired || it->second->expiryInterval() == 0) {
        discarded = std::move(it->second);
        sessions_.erase(it);
        timed_.erase(discarded.get());
      } else {
        session = it->second;
        timed_.erase(session.get());
      }
    }
    sessionPresent = session != nullptr;
    if (!session) {
      session = std::make_shared<Session>(clientId, expiryInterval, sessionLimits());
      sessions_.emplace(session->clientId(), session);  // keyed by the session's own copy
    } else {
      session->setExpiryInterval(expiryInterval);
    }
    session->owner_ = connection;
    session->owned_ = true;
  }
  if (discarded) {
    discarded->discard();
    dropSubscriptions(*discarded);
    // The old session ended: a will it was still holding back goes out now.
    if (MessagePtr will = discarded->takeWill(0, true)) publishWill(will);
  }
  return session;
}

std::optional<Broker::ClientIdentity> Broker::clientIdentity(const std::string& clientId) {
  std::lock_guard lock(sessionsMutex_);
  auto it = sessions_.find(clientId);
  if (it == sessions_.end()) return std::nullopt;
  if (!it->second->owned_) return std::nullopt;
  auto connection = it->second->owner_.lock();
  if (!connection) return std::nullopt;
  // Set before openSession (under this mutex) and never changed after: safe to read here.
  return ClientIdentity{std::string(connection->transportName()), connection->certificateCn(),
                        std::string(connection->username())};
}

void Broker::closeSession(const std::shared_ptr<Session>& session, const Connection* connection,
                          MessagePtr will, std::uint32_t willDelay) {
  session->detach(connection);
  bool remove = false;
  bool publishNow = false;
  {
    std::lock_guard lock(sessionsMutex_);
    if (session->owned_ && session->owner_.lock().get() == connection) {
      session->owner_.reset();
      session->owned_ = false;
    }
    auto it = sessions_.find(session->clientId());
    const bool current = it != sessions_.end() && it->second == session;
    const bool resumedElsewhere = current && session->owned_;
    if (current && !resumedElsewhere) {
      if (session->expiryInterval() == 0) {
        sessions_.erase(it);
        remove = true;
      } else if (session->expiryInterval() != kSessionNeverExpires || (will && willDelay > 0)) {
        timed_[session.get()] = session;
      }
    }
    if (will) {
      if (resumedElsewhere) {
        // Taken over: the old connection's will goes out unless it was delayed, in which case
        // the new connection resumed the session in time [MQTT-3.1.3-9].
        publishNow = willDelay == 0;
      } else if (willDelay == 0 || remove || !current) {
        publishNow = true;  // no delay, or the session ends now: whichever comes first
      } else {
        // Set under the registry lock so the expiry timer sees it together with timed_.
        session->setPendingWill(std::move(will),
                                core::monotonicMicros() + std::int64_t{willDelay} * 1'000'000);
      }
    }
  }
  if (remove) {
    session->discard();
    dropSubscriptions(*session);
  }
  if (publishNow) publishWill(will);
}

void Broker::scheduleExpiry() {
  if (stopping_ || !expiryTimer_) return;
  expiryTimer_->expires_after(std::chrono::seconds(1));
  expiryTimer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    expireSessions();
    scheduleExpiry();
  });
}

void Broker::expireSessions() {
  const std::int64_t now = core::monotonicMicros();
  std::vector<std::shared_ptr<Session>> ended;
  std::vector<MessagePtr> wills;
  {
    std::lock_guard lock(sessionsMutex_);
    for (auto it = timed_.begin(); it != timed_.end();) {
      const std::shared_ptr<Session>& session = it->second;
      if (session->attached()) {
        it = timed_.erase(it);
        continue;
      }
      const std::int64_t expiresAt = session->expiresAtUs();
      const bool expired = expiresAt != 0 && now >= expiresAt;
      if (MessagePtr will = session->takeWill(now, expired)) wills.push_back(std::move(will));
      if (expired) {
        auto current = sessions_.find(session->clientId());
        if (current != sessions_.end() && current->second == session) sessions_.erase(current);
        ended.push_back(session);
        it = timed_.erase(it);
      } else if (!session->hasPendingWill() && expiresAt == 0) {
        it = timed_.erase(it);  // a never-expiring session whose will has gone out
      } else {
        ++it;
      }
    }
  }
  for (const MessagePtr& will : wills) publishWill(will);
  for (const auto& session : ended) {
    spdlog::debug("mqtt: session '{}' expired", session->clientId());
    session->discard();
    dropSubscriptions(*session);
  }
}

bool Broker::subscribe(const std::shared_ptr<Session>& session, const std::string& filter,
                       const SubscriptionOptions& options) {
  const bool existed = session->addSubscription(filter, options);
  subscriptions_.subscribe(session, filter, options);
  return existed;
}

bool Broker::unsubscribe(const std::shared_ptr<Session>& session, const std::string& filter) {
  if (!session->removeSubscription(filter)) return false;
  subscriptions_.unsubscribe(session.get(), filter);
  return true;
}

void Broker::deliverRetained(const std::shared_ptr<Session>& session, const std::string& filter,
                             const SubscriptionOptions& options) {
  std::vector<std::uint32_t> ids;
  if (options.subscriptionId != 0) ids.push_back(options.subscriptionId);
  for (const MessagePtr& message : retained_.matching(filter)) {
    session->deliver(message, options.qos, true, ids);
  }
}

BrokerStats Broker::stats() const {
  BrokerStats s;
  s.clientsConnected =
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, clientsConnected_.load()));
  s.connectionsTotal = connectionsTotal_.load();
  s.messagesReceived = messagesReceived_.load();
  s.messagesSent = messagesSent_.load();
  s.messagesDropped = messagesDropped_.load();
  s.messagesIngested = messagesIngested_.load();
  s.protocolErrors = protocolErrors_.load();
  s.readPauses = readPauses_.load();
  s.denied = denied_.load();
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
