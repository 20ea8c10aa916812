#pragma once
// A connected, ordered byte stream pinned to one event loop: plain TCP, or a Transport (TLS,
// WebSocket, WebSocket over TLS) that turns its framing back into a byte stream. A protocol
// connection (the MQTT broker's) is written once against ByteStream and works on all of them.
//
// Plain TCP is held inline as a RawSocket, outside Asio's reactor, and read and written directly
// by its owner when the loop's FdPoller says it is ready: no pending operation while idle. Other
// transports sit behind one virtual interface; their handlers go through a std::function, small
// next to the crypto or framing.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <variant>

#include "net/loop_socket.h"
#include "net/raw_socket.h"

namespace tern::net {

// Errors a Transport reports on top of the socket's.
enum class StreamError {
  // A WebSocket text frame: the byte stream carries binary frames only (MQTT over WebSocket).
  kTextFrame = 1,
};
const boost::system::error_category& streamErrorCategory();
boost::system::error_code make_error_code(StreamError error);

// TLS and WebSocket streams, as a byte stream. Reads and writes follow Asio's rules: at most one
// read and one write outstanding. The end of the peer's stream (TCP FIN, TLS close_notify or a
// truncated TLS stream, a WebSocket close frame) is reported as boost::asio::error::eof.
class Transport {
 public:
  using Handler = std::function<void(const boost::system::error_code&, std::size_t)>;
  virtual ~Transport() = default;

  virtual boost::asio::any_io_executor executor() = 0;
  // The TCP socket underneath (options, endpoints, the final close).
  virtual boost::asio::ip::tcp::socket& socket() = 0;
  // "tls", "ws", "wss": for logs.
  virtual std::string_view name() const = 0;
  // Some bytes of the stream (from one or more frames). Completes with at least one byte or an
  // error.
  virtual void asyncReadSome(boost::asio::mutable_buffer buffer, Handler handler) = 0;
  // All of `buffer` (one WebSocket binary message), or an error.
  virtual void asyncWrite(boost::asio::const_buffer buffer, Handler handler) = 0;
  // Says goodbye the transport's way (a WebSocket close frame), then closes the socket. No write
  // may be in progress. `keepAlive` is held until it is done; idempotent. Does not block.
  // Returns true while the goodbye is under way (the caller bounds it in time with close()).
  virtual bool shutdown(std::shared_ptr<void> keepAlive) = 0;
  // Closes the socket now; pending operations complete with operation_aborted.
  virtual void close() = 0;
};

class ByteStream {
 public:
  // Plain TCP: the socket leaves Asio's reactor (see raw_socket.h); its owner attaches it to
  // its loop's FdPoller and reads and writes it directly.
  explicit ByteStream(LoopSocket socket) : stream_(RawSocket(std::move(socket))) {}
  explicit ByteStream(std::unique_ptr<Transport> transport) : stream_(std::move(transport)) {}
  ByteStream(ByteStream&&) = default;
  ByteStream& operator=(ByteStream&&) = default;

  boost::asio::any_io_executor get_executor() {
    if (auto* tcp = std::get_if<RawSocket>(&stream_)) [[likely]] {
      return tcp->loop().get_executor();
    }
    return transport().executor();
  }

  // The socket of a plain TCP stream (plainTcp()), which its owner reads and writes directly.
  RawSocket& plainSocket() { return std::get<RawSocket>(stream_); }
  // The TCP socket under another transport (options, endpoints). Do not read or write it.
  boost::asio::ip::tcp::socket& transportSocket() { return transport().socket(); }

  // "tcp", "tls", "ws" or "wss".
  std::string_view name() const {
    if (std::holds_alternative<RawSocket>(stream_)) return "tcp";
    return std::get<std::unique_ptr<Transport>>(stream_)->name();
  }
  bool plainTcp() const { return std::holds_alternative<RawSocket>(stream_); }

  // Not plain TCP (its owner reads the RawSocket). handler(const error_code&, std::size_t); a
  // Transport needs it copyable.
  template <class Handler>
  void asyncReadSome(boost::asio::mutable_buffer buffer, Handler&& handler) {
    transport().asyncReadSome(buffer, Transport::Handler(std::forward<Handler>(handler)));
  }

  // Not plain TCP. Writes all of `buffer`; handler(const error_code&, std::size_t).
  template <class Handler>
  void asyncWrite(boost::asio::const_buffer buffer, Handler&& handler) {
    transport().asyncWrite(buffer, Transport::Handler(std::forward<Handler>(handler)));
  }

  // Ends the stream politely (TCP: FIN now; WebSocket: a close frame first), with no write in
  // progress. `keepAlive` (the owner) is held while a goodbye is under way. Idempotent.
  // Returns true while the goodbye is under way: bound it in time with close().
  bool shutdown(std::shared_ptr<void> keepAlive) {
    if (auto* tcp = std::get_if<RawSocket>(&stream_)) [[likely]] {
      tcp->shutdown();
      return false;
    }
    return transport().shutdown(std::move(keepAlive));
  }

  // Closes now.
  void close() {
    if (auto* tcp = std::get_if<RawSocket>(&stream_)) [[likely]] {
      tcp->close();
      return;
    }
    transport().close();
  }

 private:
  Transport& transport() { return *std::get<std::unique_ptr<Transport>>(stream_); }

  std::variant<RawSocket, std::unique_ptr<Transport>> stream_;
};

}  // namespace tern::net

namespace boost::system {
template <>
struct is_error_code_enum<tern::net::StreamError> : std::true_type {};
}  // namespace boost::system
