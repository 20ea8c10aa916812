#pragma once
// A listener whose connections come out as ready ByteStreams: plain TCP, TLS, WebSocket or
// WebSocket over TLS. The transport's handshake (TLS, the HTTP upgrade) runs on the
// connection's own loop, bounded by kHandshakeTimeout; a failed one closes that connection with
// a log line and touches nothing else. PROXY protocol headers come first, as on TcpListener.
// It also takes over WebSocket upgrades another HTTP server has read (acceptUpgrade), so the
// HTTP API can offer a WebSocket path without knowing who serves it.
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "net/byte_stream.h"
#include "net/event_loop_pool.h"
#include "net/tcp_listener.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace tern::net {

enum class StreamKind { kTcp, kTls, kWebSocket, kTlsWebSocket };

struct WebSocketOptions {
  std::string path = "/";  // the only path upgraded (query ignored); others get 404
  // Subprotocols accepted, the client's first acceptable choice is echoed. A client offering
  // only others is refused (400); one offering none is accepted.
  std::vector<std::string> subprotocols;
};

// A connection through its transport handshake.
struct AcceptedStream {
  ByteStream stream;
  std::string remoteAddress;  // "ip:port" for logs (the PROXY header's client when there is one)
  std::string remoteIp;
  // Protocol bytes read with a PROXY header (plain TCP only); process them before reading.
  std::string initialBytes;
  // TLS: the CN of the client certificate, when the client showed one and it verified.
  std::string certificateCn;
};

// A WebSocket upgrade request read by another server, with its connection.
struct HttpUpgrade {
  // The connection's socket, released from the other server's io_context (ownership moves).
  boost::asio::ip::tcp::socket::native_handle_type socket = -1;
  boost::asio::ip::tcp protocol = boost::asio::ip::tcp::v4();
  boost::beast::http::request<boost::beast::http::string_body> request;
  std::string remoteAddress;
  std::string remoteIp;
};

class StreamListener {
 public:
  // Called once per connection, on the stream's own loop, or on loop 0 for plain TCP without a
  // PROXY header: either way, build the connection on stream.get_executor().
  using OnStream = std::function<void(AcceptedStream stream)>;

  StreamListener(EventLoopPool& pool, std::string name, StreamKind kind, OnStream onStream);
  ~StreamListener();
  StreamListener(const StreamListener&) = delete;
  StreamListener& operator=(const StreamListener&) = delete;

  // Before start(). kTls and kTlsWebSocket need a TLS context.
  void setProxyProtocol(bool enabled) { listener_.setProxyProtocol(enabled); }
  void setTls(std::shared_ptr<boost::asio::ssl::context> context);
  void setWebSocket(WebSocketOptions options);

  // Binds and listens; throws std::runtime_error naming the address when it cannot bind.
  void start(const core::HostPort& address);
  // Stops accepting (and taking upgrades); existing connections are untouched. Thread-safe.
  void stop();
  std::uint16_t port() const { return listener_.port(); }
  const std::string& name() const;

  // kWebSocket listeners (started or not): adopts the socket onto the next loop of the pool and
  // finishes the WebSocket handshake there, then calls OnStream. Thread-safe.
  void acceptUpgrade(HttpUpgrade upgrade);

  static constexpr std::chrono::seconds kHandshakeTimeout{10};
  // Connections in their handshake, beyond which new ones are refused.
  static constexpr std::size_t kMaxPendingHandshakes = 4096;

  struct Shared;

 private:
  void onAccept(AcceptedConnection accepted);

  EventLoopPool& pool_;
  std::shared_ptr<Shared> shared_;
  TcpListener listener_;
};

}  // namespace tern::net
