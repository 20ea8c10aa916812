#pragma once
// A blocking WebSocket (or WebSocket-over-TLS) client for tests, built on Boost.Beast, that
// sends raw MQTT bytes in whatever frames a test wants and parses what comes back with the
// codec. Every wait has a deadline: a broken server fails a test instead of hanging it.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "codec/mqtt/codec.h"
#include "codec/mqtt/packets.h"

namespace tern::test {

class WsClient {
 public:
  // tlsContext: non-null for wss (kept by the caller for the client's life).
  explicit WsClient(boost::asio::ssl::context* tlsContext = nullptr);
  ~WsClient();

  // TCP connect (+ TLS) + the upgrade for `target`, offering `protocols` (comma-separated; empty
  // offers none). Returns the HTTP status of the answer (101 when upgraded), 0 on a network
  // or TLS failure. `prefix` is written on the TCP connection first (a PROXY header).
  unsigned open(std::uint16_t port, const std::string& target = "/mqtt",
                const std::string& protocols = "mqtt", const std::string& prefix = {});
  // The subprotocol the server chose (empty: none).
  const std::string& protocol() const { return protocol_; }

  // One binary message in one frame.
  bool writeBinary(const std::string& bytes);
  // One binary message in several frames (a fragmented message).
  bool writeFragments(const std::vector<std::string>& parts);
  bool writeText(const std::string& text);
  bool writePacket(const codec::mqtt::Packet& packet);

  // The next MQTT packet (however the server framed it), or nullopt on timeout or close.
  std::optional<codec::mqtt::Packet> receive(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // CONNECT (clean session) and wait for CONNACK; true when accepted.
  bool connectMqtt(const std::string& clientId);
  // Reads until the server closes: the close code it sent (or nullopt on timeout / no code).
  std::optional<std::uint16_t> waitClose(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));
  bool closed() const { return closed_; }

 private:
  template <class Fn>
  bool withStream(Fn&& fn);
  // Starts an async op via `start(handler)` and runs the loop until it completes or the deadline
  // passes (then the socket is closed). Returns the op's error code (timed_out on a deadline).
  template <class Start>
  boost::system::error_code run(Start&& start, std::chrono::milliseconds timeout);

  boost::asio::io_context io_;
  boost::asio::ssl::context* tlsContext_;
  std::optional<boost::beast::websocket::stream<boost::asio::ip::tcp::socket>> ws_;
  std::optional<
      boost::beast::websocket::stream<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>>
      wss_;
  std::string protocol_;
  std::string input_;
  std::deque<codec::mqtt::Packet> received_;
  bool closed_ = false;
};

}  // namespace tern::test
