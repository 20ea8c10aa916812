#include "net/stream_listener.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <optional>
#include <string_view>
#include <type_traits>

#include "net/tls_context.h"

namespace tern::net {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using TlsStream = ssl::stream<tcp::socket>;

namespace {

constexpr std::uint32_t kMaxUpgradeHeaderBytes = 8 * 1024;

// The peer ended its stream the transport's way: to the connection, all of them are EOF.
boost::system::error_code endOfStream(const boost::system::error_code& ec) {
  if (ec == ssl::error::stream_truncated || ec == websocket::error::closed) {
    return asio::error::eof;
  }
  return ec;
}

class TlsTransport final : public Transport {
 public:
  TlsTransport(tcp::socket socket, std::shared_ptr<ssl::context> context)
      : context_(std::move(context)), stream_(std::move(socket), *context_) {}

  TlsStream& stream() { return stream_; }
  asio::any_io_executor executor() override { return stream_.get_executor(); }
  tcp::socket& socket() override { return stream_.next_layer(); }
  std::string_view name() const override { return "tls"; }

  void asyncReadSome(asio::mutable_buffer buffer, Handler handler) override {
    stream_.async_read_some(buffer, [handler = std::move(handler)](
                                        const boost::system::error_code& ec, std::size_t bytes) {
      handler(endOfStream(ec), bytes);
    });
  }
  void asyncWrite(asio::const_buffer buffer, Handler handler) override {
    asio::async_write(stream_, buffer, std::move(handler));
  }
  // A close_notify, so that the peer sees a clean end of the TLS stream rather than a
  // truncation. The read still outstanding is cancelled first (the shutdown reads the peer's
  // answer); the caller bounds the wait for that answer with close().
  bool shutdown(std::shared_ptr<void> keepAlive) override {
    if (closing_) return !closed_;
    closing_ = true;
    boost::system::error_code ignored;
    socket().cancel(ignored);
    // `this` outlives the operation: `keepAlive` is its owner.
    stream_.async_shutdown(
        [this, keepAlive = std::move(keepAlive)](const boost::system::error_code&) { close(); });
    return true;
  }
  void close() override {
    closed_ = true;
    boost::system::error_code ignored;
    socket().close(ignored);
  }

 private:
  std::shared_ptr<ssl::context> context_;  // outlives the stream's SSL object
  TlsStream stream_;
  bool closing_ = false;
  bool closed_ = false;
};

template <class Next>
class WebSocketTransport final : public Transport {
 public:
  template <class... Args>
  explicit WebSocketTransport(std::shared_ptr<ssl::context> context, Args&&... args)
      : context_(std::move(context)), ws_(std::forward<Args>(args)...) {}

  websocket::stream<Next>& ws() { return ws_; }
  asio::any_io_executor executor() override { return ws_.get_executor(); }
  tcp::socket& socket() override { return beast::get_lowest_layer(ws_); }
  std::string_view name() const override {
    return std::is_same_v<Next, tcp::socket> ? "ws" : "wss";
  }

  // Message payload bytes, whatever the frame boundaries: an MQTT packet may span frames and a
  // frame may hold several packets. Control frames (ping, close) are handled by Beast.
  void asyncReadSome(asio::mutable_buffer buffer, Handler handler) override {
    // `this` outlives the operation: the handler holds the stream's owner (Asio's rule), and an
    // error (operation_aborted on destruction) is checked before `this` is touched.
    ws_.async_read_some(buffer, [this, handler = std::move(handler)](
                                    const boost::system::error_code& ec, std::size_t bytes) {
      if (!ec && ws_.got_text()) {
        closeCode_ = websocket::close_code::unknown_data;
        handler(make_error_code(StreamError::kTextFrame), 0);
        return;
      }
      handler(endOfStream(ec), bytes);
    });
  }
  // One binary message per write; the server does not mask, so Beast sends the caller's bytes
  // behind a header without copying them.
  void asyncWrite(asio::const_buffer buffer, Handler handler) override {
    ws_.async_write(buffer, std::move(handler));
  }
  bool shutdown(std::shared_ptr<void> keepAlive) override {
    if (closing_) return !closed_;
    closing_ = true;
    if (!ws_.is_open()) {
      close();
      return false;
    }
    ws_.async_close(closeCode_, [this, keepAlive = std::move(keepAlive)](
                                    const boost::system::error_code&) { close(); });
    return true;
  }
  void close() override {
    closed_ = true;
    boost::system::error_code ignored;
    socket().close(ignored);
  }

 private:
  std::shared_ptr<ssl::context> context_;  // wss: outlives the stream's SSL object
  websocket::stream<Next> ws_;
  websocket::close_code closeCode_ = websocket::close_code::normal;
  bool closing_ = false;
  bool closed_ = false;
};

using WsTransport = WebSocketTransport<tcp::socket>;
using WssTransport = WebSocketTransport<TlsStream>;

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

struct StreamListener::Shared {
  std::string name;
  StreamKind kind = StreamKind::kTcp;
  OnStream onStream;
  std::shared_ptr<ssl::context> tls;
  WebSocketOptions webSocket;
  std::atomic<std::size_t> pending{0};
  std::atomic<bool> stopped{false};
};

namespace {

// One connection's way through its transport handshake, on the connection's loop.
class Handshake : public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(std::shared_ptr<StreamListener::Shared> shared, tcp::socket socket,
            std::string remoteAddress, std::string remoteIp, std::string initialBytes)
      : shared_(std::move(shared)),
        timer_(socket.get_executor()),
        remoteAddress_(std::move(remoteAddress)),
        remoteIp_(std::move(remoteIp)),
        initialBytes_(std::move(initialBytes)) {
    shared_->pending.fetch_add(1, std::memory_order_relaxed);
    switch (shared_->kind) {
      case StreamKind::kTls:
        tls_ = std::make_unique<TlsTransport>(std::move(socket), shared_->tls);
        break;
      case StreamKind::kWebSocket:
        ws_ = std::make_unique<WsTransport>(nullptr, std::move(socket));
        break;
      case StreamKind::kTlsWebSocket:
        wss_ = std::make_unique<WssTransport>(shared_->tls, std::move(socket), *shared_->tls);
        break;
      case StreamKind::kTcp:
        break;
    }
  }
  ~Handshake() { shared_->pending.fetch_sub(1, std::memory_order_relaxed); }
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;

  asio::any_io_executor executor() { return timer_.get_executor(); }

  // A fresh connection: the whole handshake.
  void start() {
    armTimer();
    switch (shared_->kind) {
      case StreamKind::kTls:
        tlsHandshake(tls_->stream());
        break;
      case StreamKind::kWebSocket:
        readRequest(ws_->ws().next_layer());
        break;
      case StreamKind::kTlsWebSocket:
        tlsHandshake(wss_->ws().next_layer());
        break;
      case StreamKind::kTcp:
        break;
    }
  }

  // An upgrade request already read by another server (plain WebSocket only).
  void startWithRequest(http::request<http::string_body> request) {
    armTimer();
    onRequest(ws_->ws().next_layer(), std::move(request));
  }

 private:
  void armTimer() {
    timer_.expires_after(StreamListener::kHandshakeTimeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec && !self->done_) self->fail("handshake not finished within 10 s");
    });
  }

  tcp::socket& socket() {
    if (tls_) return tls_->socket();
    if (ws_) return ws_->socket();
    return wss_->socket();
  }

  void tlsHandshake(TlsStream& stream) {
    // Bytes read with a PROXY header are the start of the ClientHello.
    stream.async_handshake(
        ssl::stream_base::server, asio::buffer(initialBytes_),
        [self = shared_from_this(), &stream](const boost::system::error_code& ec, std::size_t) {
          self->onTlsHandshake(stream, ec);
        });
  }

  void onTlsHandshake(TlsStream& stream, const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      fail("TLS handshake failed: " + ec.message());
      return;
    }
    initialBytes_.clear();
    certificateCn_ = verifiedPeerCommonName(stream.native_handle());
    if (tls_) {
      finish(ByteStream(std::move(tls_)));
    } else {
      readRequest(stream);
    }
  }

  template <class Stream>
  void readRequest(Stream& stream) {
    parser_.emplace();
    parser_->header_limit(kMaxUpgradeHeaderBytes);
    parser_->body_limit(0);
    // Plain WebSocket behind a PROXY header: the bytes after it start the HTTP request.
    if (!initialBytes_.empty()) {
      auto space = buffer_.prepare(initialBytes_.size());
      asio::buffer_copy(space, asio::buffer(initialBytes_));
      buffer_.commit(initialBytes_.size());
      initialBytes_.clear();
    }
    http::async_read(
        stream, buffer_, *parser_,
        [self = shared_from_this(), &stream](const boost::system::error_code& ec, std::size_t) {
          if (self->done_) return;
          if (ec) {
            self->fail("no WebSocket upgrade request: " + ec.message());
            return;
          }
          self->onRequest(stream, self->parser_->release());
        });
  }

  template <class Stream>
  void onRequest(Stream& stream, http::request<http::string_body> received) {
    const WebSocketOptions& options = shared_->webSocket;
    request_ = std::move(received);
    const auto& request = request_;
    std::string_view target = request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    if (path != options.path) {
      refuse(stream, http::status::not_found, request.version(),
             "WebSocket request for " + std::string(path) + ", not " + options.path);
      return;
    }
    if (!websocket::is_upgrade(request)) {
      refuse(stream, http::status::upgrade_required, request.version(),
             "plain HTTP request for " + options.path + " (a WebSocket upgrade is needed)");
      return;
    }
    // The client lists subprotocols by preference; the first one we speak wins.
    std::string chosen;
    bool offered = false;
    std::string_view list = request[http::field::sec_websocket_protocol];
    while (chosen.empty() && !list.empty()) {
      const std::size_t comma = list.find(',');
      const std::string_view item = trim(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (item.empty()) continue;
      offered = true;
      for (const auto& supported : options.subprotocols) {
        if (item == supported) chosen = supported;
      }
    }
    if (offered && chosen.empty()) {
      refuse(stream, http::status::bad_request, request.version(),
             "no supported WebSocket subprotocol offered: " +
                 std::string(request[http::field::sec_websocket_protocol]));
      return;
    }
    auto configure = [&](auto& ws) {
      ws.set_option(websocket::stream_base::decorator([chosen](websocket::response_type& response) {
        response.set(http::field::server, "tern/" TERN_VERSION);
        if (!chosen.empty()) response.set(http::field::sec_websocket_protocol, chosen);
      }));
      websocket::stream_base::timeout timeout{};
      timeout.handshake_timeout = StreamListener::kHandshakeTimeout;  // also the close handshake
      timeout.idle_timeout = websocket::stream_base::none();          // MQTT keepalive does this
      timeout.keep_alive_pings = false;
      ws.set_option(timeout);
      ws.binary(true);
      ws.auto_fragment(false);
      // The connection reads a message piecewise and limits MQTT packets itself.
      ws.read_message_max(0);
      ws.async_accept(request, [self = shared_from_this()](const boost::system::error_code& ec) {
        self->onAccepted(ec);
      });
    };
    if (ws_) {
      configure(ws_->ws());
    } else {
      configure(wss_->ws());
    }
  }

  void onAccepted(const boost::system::error_code& ec) {
    if (done_) return;
    if (ec) {
      fail("WebSocket handshake failed: " + ec.message());
      return;
    }
    if (ws_) {
      finish(ByteStream(std::move(ws_)));
    } else {
      finish(ByteStream(std::move(wss_)));
    }
  }

  template <class Stream>
  void refuse(Stream& stream, http::status status, unsigned version, std::string reason) {
    spdlog::warn("{}: refusing connection from {}: {}", shared_->name, remoteAddress_, reason);
    response_.emplace(status, version);
    response_->set(http::field::server, "tern/" TERN_VERSION);
    response_->set(http::field::content_type, "text/plain");
    if (status == http::status::upgrade_required) {
      response_->set(http::field::upgrade, "websocket");
      response_->set(http::field::connection, "upgrade");
    }
    response_->keep_alive(false);
    response_->body() = std::move(reason) + "\n";
    response_->prepare_payload();
    http::async_write(stream, *response_,
                      [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                        self->done_ = true;
                        self->timer_.cancel();
                        boost::system::error_code ignored;
                        self->socket().shutdown(tcp::socket::shutdown_both, ignored);
                        self->socket().close(ignored);
                      });
  }

  void finish(ByteStream stream) {
    done_ = true;
    timer_.cancel();
    if (shared_->stopped.load(std::memory_order_relaxed)) {
      stream.close();
      return;
    }
    spdlog::debug("{}: {} handshake done with {}{}", shared_->name, stream.name(), remoteAddress_,
                  certificateCn_.empty() ? "" : " (certificate CN '" + certificateCn_ + "')");
    shared_->onStream(AcceptedStream{std::move(stream),
                                     std::move(remoteAddress_),
                                     std::move(remoteIp_),
                                     {},
                                     std::move(certificateCn_)});
  }

  void fail(const std::string& reason) {
    done_ = true;
    spdlog::warn("{}: closing connection from {}: {}", shared_->name, remoteAddress_, reason);
    timer_.cancel();
    boost::system::error_code ignored;
    socket().close(ignored);
  }

  std::shared_ptr<StreamListener::Shared> shared_;
  asio::steady_timer timer_;
  std::string remoteAddress_;
  std::string remoteIp_;
  std::string initialBytes_;
  std::string certificateCn_;
  std::unique_ptr<TlsTransport> tls_;
  std::unique_ptr<WsTransport> ws_;
  std::unique_ptr<WssTransport> wss_;
  beast::flat_buffer buffer_{kMaxUpgradeHeaderBytes};
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  std::optional<http::response<http::string_body>> response_;
  bool done_ = false;
};

}  // namespace

StreamListener::StreamListener(EventLoopPool& pool, std::string name, StreamKind kind,
                               OnStream onStream)
    : pool_(pool),
      shared_(std::make_shared<Shared>()),
      listener_(pool, name,
                [this](AcceptedConnection accepted) { onAccept(std::move(accepted)); }) {
  shared_->name = std::move(name);
  shared_->kind = kind;
  shared_->onStream = std::move(onStream);
}

StreamListener::~StreamListener() = default;

void StreamListener::setTls(std::shared_ptr<ssl::context> context) {
  shared_->tls = std::move(context);
}

void StreamListener::setWebSocket(WebSocketOptions options) {
  shared_->webSocket = std::move(options);
}

const std::string& StreamListener::name() const {
  return shared_->name;
}

void StreamListener::start(const core::HostPort& address) {
  const bool needsTls =
      shared_->kind == StreamKind::kTls || shared_->kind == StreamKind::kTlsWebSocket;
  if (needsTls && !shared_->tls) {
    throw std::runtime_error(shared_->name + ": TLS listener without a certificate");
  }
  listener_.start(address);
}

void StreamListener::stop() {
  shared_->stopped = true;
  if (listener_.port() != 0) listener_.stop();
}

void StreamListener::onAccept(AcceptedConnection accepted) {
  if (shared_->kind == StreamKind::kTcp) {
    shared_->onStream(AcceptedStream{ByteStream(std::move(accepted.socket)),
                                     std::move(accepted.remoteAddress),
                                     std::move(accepted.remoteIp),
                                     std::move(accepted.initialBytes),
                                     {}});
    return;
  }
  if (shared_->pending.load(std::memory_order_relaxed) >= kMaxPendingHandshakes) {
    spdlog::warn("{}: refusing connection from {}: {} connections are in their handshake",
                 shared_->name, accepted.remoteAddress, kMaxPendingHandshakes);
    boost::system::error_code ignored;
    accepted.socket.close(ignored);
    return;
  }
  auto handshake = std::make_shared<Handshake>(
      shared_, std::move(accepted.socket), std::move(accepted.remoteAddress),
      std::move(accepted.remoteIp), std::move(accepted.initialBytes));
  asio::post(handshake->executor(), [handshake] { handshake->start(); });
}

void StreamListener::acceptUpgrade(HttpUpgrade upgrade) {
  if (shared_->kind != StreamKind::kWebSocket || shared_->stopped.load() ||
      shared_->pending.load(std::memory_order_relaxed) >= kMaxPendingHandshakes) {
    if (upgrade.socket >= 0) ::close(upgrade.socket);
    return;
  }
  boost::system::error_code ec;
  tcp::socket socket(pool_.next());
  socket.assign(upgrade.protocol, upgrade.socket, ec);
  if (ec) {
    spdlog::warn("{}: cannot take over the connection from {}: {}", shared_->name,
                 upgrade.remoteAddress, ec.message());
    ::close(upgrade.socket);
    return;
  }
  auto handshake =
      std::make_shared<Handshake>(shared_, std::move(socket), std::move(upgrade.remoteAddress),
                                  std::move(upgrade.remoteIp), std::string());
  asio::post(handshake->executor(), [handshake, request = std::move(upgrade.request)]() mutable {
    handshake->startWithRequest(std::move(request));
  });
}

}  // namespace tern::net
