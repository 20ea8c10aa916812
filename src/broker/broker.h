#pragma once
// The MQTT 3.1.1 broker: listener, sessions, subscriptions, retained messages, $SYS, and the
// hand-off of routed messages to ingest.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "broker/message.h"
#include "broker/retained_store.h"
#include "broker/session.h"
#include "broker/subscription_tree.h"
#include "core/config.h"
#include "net/event_loop_pool.h"
#include "net/tcp_listener.h"

namespace tern::ingest {
class Pipeline;
class Normalizer;
}  // namespace tern::ingest

namespace tern::broker {

class Connection;

struct BrokerStats {
  std::uint64_t clientsConnected = 0;
  std::uint64_t connectionsTotal = 0;
  std::uint64_t messagesReceived = 0;  // PUBLISH packets from clients
  std::uint64_t messagesSent = 0;  // PUBLISH packets to clients
  // Deliveries not made: QoS 0 to a slow or offline subscriber, or over a queue limit.
  std::uint64_t messagesDropped = 0;
  std::uint64_t messagesIngested = 0;  // routed to storage
  std::uint64_t protocolErrors = 0;
  std::uint64_t readPauses = 0;  // times a connection stopped reading for back-pressure
  std::uint64_t subscriptions = 0;
  std::uint64_t retained = 0;
  std::int64_t uptimeSeconds = 0;
};

class Broker {
 public:
  // pipeline/normalizer may be null: then the broker routes only to subscribers.
  Broker(net::EventLoopPool& pool, core::MqttConfig config, ingest::Pipeline* pipeline,
         const ingest::Normalizer* normalizer);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Binds the listener (throws on failure) and starts $SYS publishing.
  void start();
  void stopAccepting();
  // Closes every connection (wills of clients that did not disconnect are not sent: the server
  // is going away, not the client). Waits up to `timeout` for them to finish.
  void shutdown(std::chrono::milliseconds timeout);

  std::uint16_t port() const { return listener_.port(); }
  BrokerStats stats() const;

  // --- for Connection ---
  const core::MqttConfig& config() const { return config_; }
  ingest::Pipeline* pipeline() const { return pipeline_; }
  const ingest::Normalizer* normalizer() const { return normalizer_; }
  // Fans a message out to subscribers and updates retained state (when message->retain).
  void route(const MessagePtr& message);
  // Binds a client id to `connection`: takes over (closes) an existing connection of that id;
  // reuses the session when cleanSession is false. Sets sessionPresent.
  std::shared_ptr<Session> openSession(const std::string& clientId, bool cleanSession,
                                       const std::shared_ptr<Connection>& connection,
                                       bool& sessionPresent);
  // Called once by a connection that had a session when it closes.
  void closeSession(const std::shared_ptr<Session>& session, const Connection* connection);
  void subscribe(const std::shared_ptr<Session>& session, const std::string& filter,
                 std::uint8_t qos);
  void unsubscribe(const std::shared_ptr<Session>& session, const std::string& filter);
  void deliverRetained(const std::shared_ptr<Session>& session, const std::string& filter,
                       std::uint8_t qos);
  void connectionClosed(const Connection* connection);
  void countReceived() { messagesReceived_.fetch_add(1, std::memory_order_relaxed); }
  void countIngested() { messagesIngested_.fetch_add(1, std::memory_order_relaxed); }
  void countProtocolError() { protocolErrors_.fetch_add(1, std::memory_order_relaxed); }
  void countReadPause() { readPauses_.fetch_add(1, std::memory_order_relaxed); }
  void countConnected(int delta) { clientsConnected_.fetch_add(delta, std::memory_order_relaxed); }
  std::atomic<std::uint64_t>& sentCounter() { return messagesSent_; }
  SessionLimits sessionLimits() const;

 private:
  void onAccept(net::AcceptedConnection accepted);
  void publishSys();
  void scheduleSys();

  net::EventLoopPool& pool_;
  const core::MqttConfig config_;
  ingest::Pipeline* pipeline_;
  const ingest::Normalizer* normalizer_;
  net::TcpListener listener_;
  SubscriptionTree subscriptions_;
  RetainedStore retained_;

  std::mutex sessionsMutex_;  // connect/disconnect only, never per message
  std::unordered_map<std::string, std::shared_ptr<Session>> sessions_;
  std::unordered_map<const Session*, std::weak_ptr<Connection>> owners_;

  std::mutex connectionsMutex_;
  std::unordered_map<const Connection*, std::weak_ptr<Connection>> connections_;

  std::atomic<std::int64_t> clientsConnected_{0};
  std::atomic<std::uint64_t> connectionsTotal_{0};
  std::atomic<std::uint64_t> messagesReceived_{0};
  std::atomic<std::uint64_t> messagesSent_{0};
  std::atomic<std::uint64_t> messagesDropped_{0};
  std::atomic<std::uint64_t> messagesIngested_{0};
  std::atomic<std::uint64_t> protocolErrors_{0};
  std::atomic<std::uint64_t> readPauses_{0};
  std::atomic<std::size_t> openConnections_{0};
  std::int64_t startedUs_ = 0;
  std::unique_ptr<boost::asio::steady_timer> sysTimer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace tern::broker
