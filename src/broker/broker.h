#pragma once
// The MQTT 3.1.1 / 5.0 broker: listener, sessions (with MQTT 5 expiry and delayed wills),
// subscriptions (shared ones included), retained messages, $SYS, and the hand-off of routed
// messages to ingest.
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/authenticator.h"
#include "broker/message.h"
#include "broker/retained_store.h"
#include "broker/session.h"
#include "broker/subscription_tree.h"
#include "core/config.h"
#include "net/deadline_wheel.h"
#include "net/event_loop_pool.h"
#include "net/fd_poller.h"
#include "net/stream_listener.h"

namespace tern::ingest {
class Pipeline;
class Normalizer;
}  // namespace tern::ingest

namespace tern::broker {

class Connection;
class StateStore;

struct BrokerStats {
  std::uint64_t clientsConnected = 0;
  std::uint64_t connectionsTotal = 0;
  std::uint64_t messagesReceived = 0;  // PUBLISH packets from clients
  std::uint64_t messagesSent = 0;      // PUBLISH packets to clients
  // Deliveries not made: QoS 0 to a slow or offline subscriber, or over a queue limit.
  std::uint64_t messagesDropped = 0;
  std::uint64_t messagesIngested = 0;  // routed to storage
  std::uint64_t protocolErrors = 0;
  std::uint64_t readPauses = 0;  // times a connection stopped reading for back-pressure
  std::uint64_t denied = 0;      // publishes and subscriptions the client's topic rules refused
  std::uint64_t subscriptions = 0;
  std::uint64_t retained = 0;
  std::int64_t uptimeSeconds = 0;
};

class Broker {
 public:
  // pipeline/normalizer may be null: then the broker routes only to subscribers. `state`: where
  // persistent sessions and retained messages are kept (restored by start()); null: memory only.
  // The caller starts nothing: start() loads it and starts its writer; the caller stops it after
  // shutdown().
  Broker(net::EventLoopPool& pool, core::MqttConfig config, ingest::Pipeline* pipeline,
         const ingest::Normalizer* normalizer, StateStore* state = nullptr);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Restores the stored sessions and retained messages (throws when they cannot be read), binds
  // the listeners (TCP; TLS, WebSocket, TLS WebSocket as configured; throws on failure, also for
  // unusable TLS files) and starts $SYS publishing.
  void start();
  void stopAccepting();
  // Closes every connection (wills of clients that did not disconnect are not sent: the server
  // is going away, not the client). Waits up to `timeout` for them to finish.
  void shutdown(std::chrono::milliseconds timeout);

  std::uint16_t port() const { return listener_.port(); }

  // Who a connected client is, as its transport established it (for auth, and tests).
  struct ClientIdentity {
    std::string transport;      // "tcp", "tls", "ws", "wss"
    std::string certificateCn;  // the CN of its verified TLS client certificate, or empty
    std::string username;       // the CONNECT's username, else certificateCn
  };
  // nullopt when no connection holds that client id.
  std::optional<ClientIdentity> clientIdentity(const std::string& clientId);
  // 0 when that listener is off.
  std::uint16_t tlsPort() const { return tlsListener_ ? tlsListener_->port() : 0; }
  std::uint16_t wsPort() const { return wsListener_.port(); }
  std::uint16_t wssPort() const { return wssListener_ ? wssListener_->port() : 0; }

  // MQTT over WebSocket on another server's port (the HTTP API): that server hands over the
  // upgrade requests for webSocketPath(), on any thread; the broker finishes the handshake on one
  // of its loops. Refused after stopAccepting().
  static constexpr const char* kWebSocketPath = "/mqtt";
  void acceptWebSocketUpgrade(net::HttpUpgrade upgrade);
  BrokerStats stats() const;

  // Who may connect and what they may do. Null (the default): everyone, everything. Set before
  // start(); must outlive the broker's connections.
  void setAuthenticator(Authenticator* authenticator);
  Authenticator* authenticator() const { return authenticator_; }

  // --- for Connection ---
  const core::MqttConfig& config() const { return config_; }
  ingest::Pipeline* pipeline() const { return pipeline_; }
  const ingest::Normalizer* normalizer() const { return normalizer_; }
  // Fans a message out to subscribers and updates retained state (when message->retain).
  // `publisher`: the publishing session, for MQTT 5 no-local subscriptions. Returns how many
  // sessions it went to. `durableSeq` (if given) is raised to the state store sequence number
  // that must be committed before the publish may be acknowledged (copies queued for persistent
  // sessions, the retained update); see whenStateDurable.
  std::size_t route(const MessagePtr& message, const Session* publisher = nullptr,
                    std::uint64_t* durableSeq = nullptr);
  // Runs `callback` once the state store has committed `seq` (at once without a store, or for
  // seq 0); on the store's writer thread or the caller's: post, do not work, in it.
  void whenStateDurable(std::uint64_t seq, std::function<void()> callback);
  StateStore* stateStore() const { return state_; }
  // A will: routed like a publish and handed to ingest (not acknowledged to anyone).
  void publishWill(const MessagePtr& will);
  // Binds a client id to `connection`: takes over (closes, MQTT 5: DISCONNECT 0x8E) an existing
  // connection of that id; reuses the session unless cleanStart is set or it has expired, and
  // gives it `expiryInterval` (seconds; 0 = ends with the connection, kSessionNeverExpires).
  // Sets sessionPresent.
  std::shared_ptr<Session> openSession(const std::string& clientId, bool cleanStart,
                                       std::uint32_t expiryInterval,
                                       const std::shared_ptr<Connection>& connection,
                                       bool& sessionPresent);
  // Called once by a connection that had a session when it closes. `will`: published at once,
  // or after `willDelay` seconds (MQTT 5) unless the session is resumed first or ends sooner.
  void closeSession(const std::shared_ptr<Session>& session, const Connection* connection,
                    MessagePtr will = nullptr, std::uint32_t willDelay = 0);
  // Returns whether the subscription already existed (for retain handling 1).
  bool subscribe(const std::shared_ptr<Session>& session, const std::string& filter,
                 const SubscriptionOptions& options);
  // Returns whether the subscription existed.
  bool unsubscribe(const std::shared_ptr<Session>& session, const std::string& filter);
  void deliverRetained(const std::shared_ptr<Session>& session, const std::string& filter,
                       const SubscriptionOptions& options);
  void connectionClosed(const Connection* connection);
  void countReceived() { messagesReceived_.fetch_add(1, std::memory_order_relaxed); }
  void countIngested() { messagesIngested_.fetch_add(1, std::memory_order_relaxed); }
  void countProtocolError() { protocolErrors_.fetch_add(1, std::memory_order_relaxed); }
  void countDenied() { denied_.fetch_add(1, std::memory_order_relaxed); }
  void countReadPause() { readPauses_.fetch_add(1, std::memory_order_relaxed); }
  void countConnected(int delta) { clientsConnected_.fetch_add(delta, std::memory_order_relaxed); }
  std::atomic<std::uint64_t>& sentCounter() { return messagesSent_; }
  // Shared by every session (they keep a reference to it).
  const SessionLimits& sessionLimits() const;

 private:
  static net::WebSocketOptions webSocketOptions();
  void onAccept(net::AcceptedStream accepted);
  // The index of the pool's loop `executor` belongs to; npos when it is none of them.
  std::size_t loopIndexOf(const boost::asio::any_io_executor& executor);
  void publishSys();
  void scheduleSys();
  // Once a second: publishes delayed wills that are due and ends expired sessions.
  void scheduleExpiry();
  void expireSessions();
  // Removes an ended session's subscriptions from the tree.
  void dropSubscriptions(const Session& session);
  // Start-up: sessions (detached, with their remaining expiry), subscriptions, queues and
  // retained messages from the state store.
  void restoreState();
  // Closes every connection whose grant is among `grants` (each on its own loop).
  void closeRevoked(std::vector<std::string> grants);

  net::EventLoopPool& pool_;
  const core::MqttConfig config_;
  ingest::Pipeline* pipeline_;
  const ingest::Normalizer* normalizer_;
  StateStore* state_;
  SessionLimits sessionLimits_;  // set in the constructor; before the sessions, which refer to it
  net::StreamListener listener_;
  std::unique_ptr<net::StreamListener> tlsListener_;
  // Also takes the HTTP API's upgrades, so it exists even when mqtt.ws_listen is off.
  net::StreamListener wsListener_;
  std::unique_ptr<net::StreamListener> wssListener_;
  SubscriptionTree subscriptions_;
  RetainedStore retained_;

  // Connect/disconnect only, never per message. Also guards each session's owner_/owned_.
  std::mutex sessionsMutex_;
  // Keyed by a view of the session's own client id (one copy of it per client, not two): an
  // entry is only ever added with its session, and erased before that session can go.
  // The hash is not cached in the nodes (ClientIdHash is noexcept): 16 bytes less per client,
  // paid for with hashing again when the table grows.
  struct ClientIdHash {
    std::size_t operator()(std::string_view id) const noexcept {
      return std::hash<std::string_view>{}(id);
    }
  };
  std::unordered_map<std::string_view, std::shared_ptr<Session>, ClientIdHash> sessions_;
  // Detached sessions that will expire or have a delayed will: checked by the expiry timer.
  std::unordered_map<const Session*, std::shared_ptr<Session>> timed_;

  // One per event loop (pool_.loop(i)), declared before connections_ so that it outlives them.
  std::vector<std::unique_ptr<net::DeadlineWheel<Connection>>> wheels_;
  // Also one per event loop: readiness of plain TCP connections.
  std::vector<std::unique_ptr<net::FdPoller>> pollers_;
  std::mutex connectionsMutex_;
  // Open connections, owned here until they close (an idle or paused connection has no pending
  // operation that would keep it alive).
  // A set of the owning pointers, looked up by the plain pointer (a 24-byte node, not 32).
  struct ConnectionHash {
    using is_transparent = void;
    std::size_t operator()(const Connection* c) const noexcept {
      return std::hash<const Connection*>{}(c);
    }
    std::size_t operator()(const std::shared_ptr<Connection>& c) const noexcept {
      return (*this)(c.get());
    }
  };
  struct ConnectionEqual {
    using is_transparent = void;
    static const Connection* raw(const Connection* c) { return c; }
    static const Connection* raw(const std::shared_ptr<Connection>& c) { return c.get(); }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return raw(a) == raw(b);
    }
  };
  std::unordered_set<std::shared_ptr<Connection>, ConnectionHash, ConnectionEqual> connections_;

  std::atomic<std::int64_t> clientsConnected_{0};
  std::atomic<std::uint64_t> connectionsTotal_{0};
  std::atomic<std::uint64_t> messagesReceived_{0};
  std::atomic<std::uint64_t> messagesSent_{0};
  std::atomic<std::uint64_t> messagesDropped_{0};
  std::atomic<std::uint64_t> messagesIngested_{0};
  std::atomic<std::uint64_t> protocolErrors_{0};
  std::atomic<std::uint64_t> readPauses_{0};
  std::atomic<std::uint64_t> denied_{0};
  Authenticator* authenticator_ = nullptr;
  std::atomic<std::size_t> openConnections_{0};
  std::int64_t startedUs_ = 0;
  std::unique_ptr<boost::asio::steady_timer> sysTimer_;
  std::unique_ptr<boost::asio::steady_timer> expiryTimer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace tern::broker
