#pragma once
// One MQTT client connection, pinned to one event loop. Every member runs on that loop; other
// threads reach it only through posted handlers (onSessionWake, onAckReady, resumeReading).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/authenticator.h"
#include "broker/message.h"
#include "broker/topic_acl.h"
#include "codec/mqtt/packets.h"
#include "net/byte_stream.h"
#include "net/deadline_wheel.h"

namespace tern::broker {

class Broker;
class Session;

class Connection : public std::enable_shared_from_this<Connection>, public net::FdPoller::Client {
 public:
  // `stream`: plain TCP, TLS or WebSocket, already through its handshake. `peer`: the client's
  // address for logs ("ip:port"; empty → the socket's peer). `initialBytes`: protocol bytes
  // already read from the socket (after a PROXY header), processed first. `certificateCn`: the
  // CN of the client's verified TLS certificate, empty without one.
  // `wheel`: the deadlines of the loop the stream belongs to; `poller`: its readiness of plain
  // TCP sockets.
  Connection(Broker& broker, net::DeadlineWheel<Connection>& wheel, net::ByteStream stream,
             std::string peer = {}, std::string initialBytes = {}, std::string certificateCn = {});
  ~Connection();

  // On the stream's loop; `poller` is that loop's.
  void start(net::FdPoller& poller);
  boost::asio::any_io_executor executor() { return stream_.get_executor(); }
  // Until the session is open, the CONNECT's; then the session's.
  const std::string& clientId() const;
  // The identity TLS established: the CN of the client's verified certificate, empty when the
  // client showed none (or the listener is not TLS). It is the device id; when the CONNECT has
  // no username, it also stands as the username (username()).
  const std::string& certificateCn() const;
  // The CONNECT's username, or certificateCn() when it gave none; empty before CONNECT.
  std::string_view username() const { return names_.username(); }
  // "tcp", "tls", "ws" or "wss".
  std::string_view transportName() const { return stream_.name(); }

  // The grant of its credential (see Authenticator), empty for clients that cannot be revoked.
  std::string_view grant() const { return grantReleased_ ? std::string_view() : names_.grant(); }

  // The loop's DeadlineWheel: connect timeout, keepalive and the close linger share one hook.
  net::DeadlineHook& deadlineHook() { return deadline_; }
  void onDeadline(std::int64_t nowUs);

  // Plain TCP readiness (net::FdPoller::Client).
  void onFdReady(std::uint32_t ready) override;
  void onPollerGone() override;

  // Posted handlers.
  void onSessionWake();
  // The authenticator's answer to this connection's CONNECT.
  void onAuthenticated(AuthDecision decision);
  // Closes the connection (MQTT 5: DISCONNECT 0x87) when its grant is among `revoked`.
  void closeIfRevoked(const std::vector<std::string>& revoked);
  void onAckReady(std::uint64_t sequence);
  void resumeReading();
  // Another connection took this client id over, or the server is shutting down. An MQTT 5
  // client is told why with a DISCONNECT carrying `reasonCode`.
  void closeFromBroker(std::string_view reason, bool sendWill, std::uint8_t reasonCode);

 private:
  enum class State : std::uint8_t { kAwaitConnect, kConnected, kClosed };

  // An acknowledgement we owe the client. PUBACK/PUBREC of routed messages wait for the commit;
  // the rest are ready at once. They go out in the order the publishes came in.
  struct PendingAck {
    std::uint64_t sequence = 0;
    codec::mqtt::PacketType type = codec::mqtt::PacketType::kPuback;
    std::uint16_t packetId = 0;
    bool ready = false;
    std::uint8_t reasonCode = 0;  // MQTT 5
  };

  void readMore();
  // Room for at least 1 KiB more after inputUsed_.
  void growInput();
  void onRead(const boost::system::error_code& ec, std::size_t bytes);
  // Plain TCP with nothing buffered: the socket became readable; read into the loop's buffer.
  void onReadable();
  // After bytes were added to input_ (or handled from the loop's buffer): checks back-pressure
  // and reads on.
  void afterInput();
  void processInput();
  // Handles every whole packet at the start of `data`; returns the bytes it used.
  std::size_t handleBytes(std::string_view data);
  // Returns false when the connection must close (the reason is already logged).
  bool handlePacket(codec::mqtt::Packet& packet);
  bool handleConnect(codec::mqtt::Connect& connect);
  // The part of CONNECT after authentication: session, CONNACK.
  bool finishConnect(codec::mqtt::Connect& connect, bool assignedId);
  // A resumed session loses the subscriptions acl_ does not allow.
  void dropForbiddenSubscriptions();
  // Refuses a CONNECT the authenticator turned down, with the version's CONNACK code.
  void refuseAuthentication(const AuthDecision& decision);
  bool handlePublish(codec::mqtt::Publish& publish);
  // A PUBLISH the client's topic rules do not allow: not routed, not stored; acknowledged
  // (MQTT 5: with 0x87).
  bool denyPublish(const codec::mqtt::Publish& publish);
  bool handleAck(const codec::mqtt::Ack& ack);
  bool handleSubscribe(const codec::mqtt::Subscribe& subscribe);
  bool handleUnsubscribe(const codec::mqtt::Unsubscribe& unsubscribe);
  bool handleDisconnect(const codec::mqtt::Disconnect& disconnect);
  // MQTT 5: refuses a CONNECT with a CONNACK reason code, then closes.
  bool refuseConnect(codec::mqtt::ConnackCode code, std::string_view reason);
  // MQTT 5: resolves/records an incoming topic alias. False when the connection was closed.
  bool resolveTopicAlias(codec::mqtt::Publish& publish);
  bool v5() const { return version_ == codec::mqtt::ProtocolVersion::kV5; }
  void encodeAck(codec::mqtt::PacketType type, std::uint16_t packetId, std::uint8_t reasonCode);

  std::uint64_t queueAck(codec::mqtt::PacketType type, std::uint16_t packetId, bool ready,
                         std::uint8_t reasonCode = 0);
  void flushAcks();
  void flush();
  // Plain TCP: writes what is left of io_->writing now. True when all of it went; false when the
  // socket is full (writeInProgress_, waiting for kWrite) or the write failed (handled).
  bool writePlain();
  void onWritten(const boost::system::error_code& ec);
  // Plain TCP: what the loop's poller should report, from reading_ and writeInProgress_.
  void updateInterest();
  // A closed plain TCP connection whose last bytes are still going out holds itself (the
  // broker's registry no longer does) until they went or the linger deadline passed. The caller
  // keeps what this returns until it is done with this connection.
  std::shared_ptr<Connection> dropLingerHold();
  void armKeepalive();
  // The one place a connection ends. A protocol violation is logged with the client and reason.
  // An MQTT 5 client that got its CONNACK is sent DISCONNECT `disconnectReason` first (none
  // when it is 0 and this is not a protocol error).
  void close(std::string_view reason, bool protocolError, bool sendWill,
             std::uint8_t disconnectReason = 0);

  Broker& broker_;
  net::DeadlineWheel<Connection>& wheel_;
  net::DeadlineHook deadline_;
  net::ByteStream stream_;
  // Rarely kept state, allocated on first use and freed when empty (trimRare), so that a
  // connection past its CONNECT usually holds none of it: the client id until the session keeps
  // it (and again after close, for logs), the CONNECT waiting for the authenticator, the TLS
  // certificate's CN and MQTT 5 incoming topic aliases (alias - 1 → topic).
  struct Rare {
    std::string clientId;
    std::string certificateCn;
    std::unique_ptr<codec::mqtt::Connect> pendingConnect;
    std::vector<std::string> topicAliasesIn;
    std::shared_ptr<Connection> lingerHold;  // see dropLingerHold
    bool empty() const {
      return clientId.empty() && certificateCn.empty() && !pendingConnect &&
             topicAliasesIn.empty() && !lingerHold;
    }
  };
  Rare& rare();
  void trimRare();

  // The CONNECT's username, the grant of its credential and who the authenticator said the
  // client is (for logs), in one string: every connection keeps all three for life, and one
  // string costs a third of three. Set before the session opens, never changed after (the broker
  // reads the username from other threads; see Broker::clientIdentity).
  class Names {
   public:
    std::string_view username() const { return std::string_view(text_).substr(0, usernameSize_); }
    std::string_view grant() const {
      return std::string_view(text_).substr(usernameSize_, grantSize_);
    }
    std::string_view identity() const {
      return std::string_view(text_).substr(usernameSize_ + grantSize_);
    }
    void set(std::string_view username, std::string_view grant, std::string_view identity);

   private:
    std::string text_;
    std::uint32_t usernameSize_ = 0;
    std::uint32_t grantSize_ = 0;
  };

  std::string peer_;
  Names names_;
  std::unique_ptr<Rare> rare_;
  std::shared_ptr<Session> session_;
  std::unique_ptr<codec::mqtt::Will> will_;  // on the heap: a Will is ~560 bytes, rarely set
  // The topic rules of its credential (null: everything allowed).
  std::shared_ptr<const TopicAcl> acl_;
  std::int64_t lastActivityUs_ = 0;

  // The connection's byte buffers, in one block. Plain TCP reads into a per-loop buffer and sends
  // at once, so between packets it usually has nothing here and the block is freed (trimIo): an
  // idle connection holds no buffers at all. Other transports keep it (their read buffer).
  struct Io {
    // Bytes of a packet not yet complete (plain TCP), or the read buffer (other transports).
    std::string input;
    std::string outbox;       // bytes produced on this loop (CONNACK, acks, SUBACK, PINGRESP)
    std::string writing;      // the buffer of the write in progress
    std::size_t written = 0;  // plain TCP: bytes of `writing` already sent
  };
  Io& io();
  void trimIo();
  std::unique_ptr<Io> io_;

  // Acks owed, oldest at acksHead_. A vector rather than a deque: a deque keeps a ~500-byte
  // block for life once used, this keeps room for the one or few acks a device usually owes.
  std::vector<PendingAck> acks_;
  std::uint64_t nextAckSequence_ = 0;

  // The small members together, so that padding does not cost every connection.
  std::uint32_t inputUsed_ = 0;  // bytes of io_->input in use (at most the maximum packet size)
  std::uint32_t acksHead_ = 0;
  std::uint32_t sessionExpiry_ = 0;    // MQTT 5, as set by CONNECT (DISCONNECT may change it)
  std::uint32_t inboundInflight_ = 0;  // QoS 1/2 publishes from the client not yet completed
  std::uint16_t keepAlive_ = 0;
  codec::mqtt::ProtocolVersion version_ = codec::mqtt::ProtocolVersion::kV311;
  State state_ = State::kAwaitConnect;
  // While the authenticator works, the CONNECT waits (in rare_) and nothing else is read or
  // processed.
  bool authPending_ = false;
  bool assignedId_ = false;
  bool grantReleased_ = false;  // handed back to the authenticator at close
  bool reading_ = false;
  bool paused_ = false;
  bool writeInProgress_ = false;
  bool closeAfterWrite_ = false;
  bool goodbyePending_ = false;  // the transport is saying goodbye (a WebSocket close frame)
  bool counted_ = false;         // counted in clientsConnected
};

}  // namespace tern::broker
