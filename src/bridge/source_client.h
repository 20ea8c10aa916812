#pragma once
// An external MQTT broker as a source: Tern connects to it as an MQTT 3.1.1 client, subscribes
// to the configured filters and ingests what arrives exactly like a local publish (Normalizer →
// Pipeline, and Broker::route to local subscribers). A QoS 1 message is acknowledged to the
// external broker only after its record is committed, in the order the messages arrived.
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "codec/mqtt/packets.h"
#include "core/config.h"

namespace tern::ingest {
class Pipeline;
class Normalizer;
}  // namespace tern::ingest
namespace tern::broker {
class Broker;
}

namespace tern::bridge {

struct SourceStats {
  std::string name;
  bool connected = false;        // CONNACK accepted and subscriptions in place
  std::uint64_t received = 0;    // PUBLISH packets from the source
  std::uint64_t acked = 0;       // PUBACKs sent back (each after its record was committed)
  std::uint64_t reconnects = 0;  // connection attempts after the first
  std::uint64_t readPauses = 0;  // times reading stopped for back-pressure
};

// Lives on one event loop: every handler runs there, so the protocol state needs no lock. Only
// the counters (atomics) are read from other threads. Create with std::make_shared.
class SourceClient : public std::enable_shared_from_this<SourceClient> {
 public:
  // `broker` may be null: then messages only go to ingest.
  SourceClient(boost::asio::io_context& io, core::SourceConfig config, ingest::Pipeline& pipeline,
               const ingest::Normalizer& normalizer, broker::Broker* broker,
               std::uint32_t maxPacketSize);
  ~SourceClient();
  SourceClient(const SourceClient&) = delete;
  SourceClient& operator=(const SourceClient&) = delete;

  // Starts connecting (from any thread; the work happens on the loop).
  void start();
  // Stops taking messages from the source: what arrives from now on is dropped unacknowledged
  // (the source resends QoS 1 on the next session). Waits up to `timeout` for the loop to apply
  // it. Call before the pipeline stops.
  void stopReading(std::chrono::milliseconds timeout);
  // Sends the PUBACKs whose records are committed, then DISCONNECT, and closes. Call after the
  // pipeline has stopped, while the loop still runs; waits up to `timeout`.
  void shutdown(std::chrono::milliseconds timeout);

  SourceStats stats() const;
  const core::SourceConfig& config() const { return config_; }

 private:
  using Clock = std::chrono::steady_clock;
  enum class State : std::uint8_t {
    kIdle,        // waiting to (re)connect
    kConnecting,  // resolving, TCP connecting
    kAwaitConnack,
    kAwaitSuback,
    kConnected,
    kDisconnecting,  // DISCONNECT being written at shutdown
    kStopped,
  };
  struct PendingAck {
    std::uint64_t sequence;
    std::uint16_t packetId;
    bool ready;  // committed (or not stored at all): may be sent once all before it are
  };

  template <class F>
  void arm(Clock::time_point at, F f);
  void disarm();

  void connect();
  void onTcpConnected();
  void startRead();
  void onRead(const boost::system::error_code& ec, std::size_t bytes);
  void processIncoming();
  bool handlePacket(codec::mqtt::Packet& packet);
  bool onConnack(const codec::mqtt::Connack& connack);
  bool onSuback(const codec::mqtt::Suback& suback);
  void onReady();
  bool onPublish(codec::mqtt::Publish& publish);
  std::uint64_t queueAck(std::uint16_t packetId, bool ready);
  void onAckReady(std::uint32_t gen, std::uint64_t sequence);
  void flushAcks();
  void resumeReading(std::uint32_t gen);
  void armPing();
  void onPingTimer();
  void flush();
  // The connection failed or broke: tear it down and schedule a reconnect with backoff.
  void lost(const std::string& reason);
  void closeSocket();
  void finish();

  boost::asio::io_context& io_;
  const core::SourceConfig config_;
  ingest::Pipeline& pipeline_;
  const ingest::Normalizer& normalizer_;
  broker::Broker* broker_;
  const std::uint32_t maxPacketSize_;

  // The TCP socket of the current connection: socket_, or the one inside tlsStream_.
  boost::asio::ip::tcp::socket& lowest();
  void onTlsHandshake(const boost::system::error_code& ec);

  using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;                    // plain TCP
  std::unique_ptr<boost::asio::ssl::context> tlsContext_;  // set when config_.tls
  // One per connection attempt (an SSL session cannot be reused after a failure). Handlers hold
  // a reference too, so a torn-down stream lives until its pending operations have completed.
  std::shared_ptr<TlsStream> tlsStream_;
  boost::asio::steady_timer timer_;  // connect timeout, keep-alive, reconnect backoff
  std::uint32_t timerSeq_ = 0;
  std::uint32_t gen_ = 0;  // bumped whenever a connection is torn down; stale handlers compare

  State state_ = State::kIdle;
  bool attempted_ = false;
  bool stopping_ = false;  // stopReading() was called: no more messages, no reconnects
  bool reading_ = false;
  bool paused_ = false;  // back-pressure: not reading until the pipeline drains
  bool writing_ = false;
  bool pingOutstanding_ = false;
  bool failedSinceConnected_ = false;  // quieter logs while the source stays unreachable
  Clock::duration backoff_;
  Clock::time_point lastSend_{};

  std::string rx_;
  std::array<char, 16384> chunk_{};
  std::string out_;   // encoded, waiting for the current write
  std::string wbuf_;  // being written
  std::deque<PendingAck> acks_;
  std::uint64_t nextAckSequence_ = 0;

  std::promise<void> closed_;  // fulfilled once by finish()
  bool closedSet_ = false;
  std::atomic<bool> shutdownRequested_{false};

  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> readPauses_{0};
};

}  // namespace tern::bridge
