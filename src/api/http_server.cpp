#include "api/http_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "api/live_feed.h"
#include "api/live_session.h"
#include "api/problem.h"
#include "api/request_target.h"
#include "api/router.h"

namespace tern::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint64_t kMaxBodyBytes = std::uint64_t{64} * 1024;
constexpr std::uint32_t kMaxHeaderBytes = 16 * 1024;
// Room for one maximal request; pipelined bytes beyond it wait in the socket.
constexpr std::size_t kReadBufferBytes = kMaxHeaderBytes + kMaxBodyBytes + 4096;
// After our last response, how long we keep reading (and discarding) before closing. Closing a
// socket with unread input sends a RST, which can destroy the response before the client reads it.
constexpr std::chrono::seconds kLingerTime{1};
constexpr std::chrono::milliseconds kAcceptRetryDelay{50};
constexpr std::string_view kServerHeader = "tern/" TERN_VERSION;
constexpr std::string_view kLivePath = "/api/v1/live";

// State the sessions share; owned by HttpServer::Impl and outliving every session.
struct SharedState {
  const Router& router;
  std::chrono::milliseconds requestTimeout;
  const std::string& upgradePath;
  const std::function<void(net::HttpUpgrade)>& upgrade;
  LiveFeed* live;
  std::atomic<std::size_t> connections{0};  // served connections, held to the limit
  std::atomic<std::size_t> rejecting{0};    // connections being answered 503, counted apart
};

bool isParseError(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

// The response to a request Beast could not parse; nullopt when there is nobody to answer.
std::optional<ApiResponse> parseErrorResponse(const beast::error_code& ec) {
  if (ec == http::error::partial_message) return std::nullopt;  // peer gave up mid-request
  if (ec == http::error::body_limit) {
    return problemResponse(413,
                           "request body larger than " + std::to_string(kMaxBodyBytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    return problemResponse(
        431, "request header larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
  }
  return problemResponse(400, "malformed HTTP request: " + ec.message());
}

// "Bearer <access_token query parameter>", or empty. Browsers cannot set headers on a WebSocket,
// so the live feed also takes its token from the query (RFC 6750 section 2.3).
std::string bearerFromQuery(std::string_view target) {
  RequestTarget parsed;
  if (parseRequestTarget(target, parsed)) return {};
  for (const auto& [name, value] : parsed.params) {
    if (name == "access_token" && !value.empty()) return "Bearer " + value;
  }
  return {};
}

// One TCP connection: read a request, answer it, repeat while keep-alive holds. All handlers run
// on the connection's strand, so a session is never touched by two threads at once.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // `counter` is the SharedState count this session is part of while it lives.
  Session(tcp::socket&& socket, SharedState& shared, std::atomic<std::size_t>& counter)
      : stream_(std::move(socket)), buffer_(kReadBufferBytes), shared_(shared), counter_(counter) {
    counter_.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() { counter_.fetch_sub(1, std::memory_order_relaxed); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::readRequest, shared_from_this()));
  }

  // Answers 503 without reading a request: the server is at its connection limit.
  void reject() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->respond(problemResponse(503, "too many open connections; retry later"), 11, false);
    });
  }

 private:
  void readRequest() {
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    parser_->header_limit(kMaxHeaderBytes);
    stream_.expires_after(shared_.requestTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::onRead, shared_from_this()));
  }

  void onRead(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec == http::error::end_of_stream) {
      lingerClose();
      return;
    }
    if (ec) {
      if (isParseError(ec)) {
        if (auto response = parseErrorResponse(ec)) {
          spdlog::debug("http api: bad request from client: {}", ec.message());
          respond(std::move(*response), 11, false);
        }
      }
      return;  // timeout or a network error: nothing to answer, the destructor closes
    }
    const auto& request = parser_->get();
    const std::string_view target = request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    const bool upgrade = beast::websocket::is_upgrade(request);
    if (shared_.upgrade && upgrade && path == shared_.upgradePath) {
      handOver();
      return;
    }
    ApiRequest apiRequest;
    apiRequest.method = request.method_string();
    apiRequest.target = target;
    apiRequest.body = request.body();
    apiRequest.accept = request[http::field::accept];
    apiRequest.authorization = request[http::field::authorization];
    apiRequest.apiKey = request["X-API-Key"];
    apiRequest.clientAddress = clientAddress();
    apiRequest.websocketUpgrade = upgrade;
    const bool live = path == kLivePath;
    std::string queryAuthorization;
    if (live && apiRequest.authorization.empty() && apiRequest.apiKey.empty()) {
      queryAuthorization = bearerFromQuery(target);
      apiRequest.authorization = queryAuthorization;
    }
    ApiResponse response = shared_.router.handle(apiRequest);
    // The live feed's target may carry a token: log its path only.
    spdlog::debug("http api: {} {} -> {}", std::string_view(request.method_string()),
                  live ? path : target, response.status);
    if (response.liveUpgrade && shared_.live != nullptr) {
      startLive(std::string(apiRequest.authorization), std::string(apiRequest.apiKey));
      return;
    }
    const bool keepAlive = request.keep_alive() && !response.close;
    respond(std::move(response), request.version(), keepAlive,
            request.method() == http::verb::head);
  }

  // The peer's IP address (no port): the key for login rate limits.
  std::string clientAddress() {
    beast::error_code ec;
    const auto endpoint = stream_.socket().remote_endpoint(ec);
    return ec ? std::string("unknown") : endpoint.address().to_string();
  }

  // Gives the connection to the live feed, which answers the upgrade; this session ends. The
  // credentials stay with the live session, which re-checks them (expiry, revocation).
  void startLive(std::string authorization, std::string apiKey) {
    const Router& router = shared_.router;
    LiveSessionHooks hooks;
    hooks.recheck = [&router, authorization = std::move(authorization),
                     apiKey = std::move(apiKey)] {
      return router.recheckCredentials(authorization, apiKey);
    };
    hooks.listDevices = [&router] { return router.readDevices(); };
    std::string peer = clientAddress();
    startLiveSession(std::move(stream_), parser_->release(), *shared_.live, std::move(hooks),
                     std::move(peer), shared_.connections);
  }

  // Gives the connection to the upgrade hook: the socket leaves this io_context (released, not
  // closed) and the session ends.
  void handOver() {
    net::HttpUpgrade upgrade;
    beast::error_code ec;
    tcp::socket& socket = stream_.socket();
    const auto local = socket.local_endpoint(ec);
    const auto remote = ec ? tcp::endpoint() : socket.remote_endpoint(ec);
    if (ec) return;  // the peer is gone; the destructor closes
    upgrade.protocol = local.protocol();
    upgrade.remoteIp = remote.address().to_string();
    upgrade.remoteAddress = net::formatEndpoint(upgrade.remoteIp, remote.port());
    if (buffer_.size() > 0) {
      // A client sends frames only after the 101 answer; bytes before it are not ours to keep.
      spdlog::debug("http api: {} bytes after the upgrade request from {} dropped", buffer_.size(),
                    upgrade.remoteAddress);
    }
    upgrade.request = parser_->release();
    stream_.expires_never();
    upgrade.socket = socket.release(ec);
    if (ec) {
      spdlog::warn("http api: cannot hand over the connection from {}: {}", upgrade.remoteAddress,
                   ec.message());
      return;
    }
    spdlog::debug("http api: WebSocket upgrade for {} from {} handed over",
                  std::string_view(upgrade.request.target()), upgrade.remoteAddress);
    shared_.upgrade(std::move(upgrade));
  }

  void respond(ApiResponse response, unsigned version, bool keepAlive, bool head = false) {
    response_ = {};
    response_.version(version);
    response_.result(response.status);
    response_.set(http::field::server, kServerHeader);
    // 204 carries no body, hence no media type either.
    if (response.status != 204) response_.set(http::field::content_type, response.contentType);
    // Answers reflect live data; caches along the way must not replay them.
    response_.set(http::field::cache_control, "no-store");
    if (!response.allow.empty()) response_.set(http::field::allow, response.allow);
    for (const auto& [name, value] : response.headers) response_.set(name, value);
    response_.keep_alive(keepAlive);
    if (head) {
      // HEAD (answered with 405) gets the headers a GET would, but never a body: the client
      // would read those bytes as the next response.
      response_.content_length(response.body.size());
    } else {
      response_.body() = std::move(response.body);
      response_.prepare_payload();
    }
    stream_.expires_after(shared_.requestTimeout);
    http::async_write(stream_, response_,
                      beast::bind_front_handler(&Session::onWrite, shared_from_this(), keepAlive));
  }

  void onWrite(bool keepAlive, beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return;
    if (keepAlive) {
      readRequest();
    } else {
      lingerClose();
    }
  }

  void lingerClose() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    stream_.async_read_some(
        asio::buffer(drainBuffer_),
        [self = shared_from_this()](beast::error_code ec, std::size_t /*bytes*/) {
          if (!ec) self->drain();  // EOF, timeout or error: done, the destructor closes
        });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::array<char, 1024> drainBuffer_{};
  SharedState& shared_;
  std::atomic<std::size_t>& counter_;
};

}  // namespace

class HttpServer::Impl {
 public:
  Impl(storage::Store& store, ApiOptions options)
      : options_(std::move(options)),
        router_(store, options_),
        shared_{router_, options_.requestTimeout, options_.upgradePath, options_.upgrade,
                options_.live} {}

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void start() {
    if (ioc_) throw std::runtime_error("http api: already started");
    const unsigned threads = options_.threads == 0 ? 1 : options_.threads;
    ioc_.emplace(static_cast<int>(threads));
    try {
      bind();
    } catch (...) {
      acceptor_.reset();
      ioc_.reset();
      throw;
    }
    acceptTimer_.emplace(acceptor_->get_executor());
    work_.emplace(ioc_->get_executor());
    if (options_.live != nullptr) options_.live->bind(ioc_->get_executor());
    doAccept();
    spdlog::info("http api listening on {} (port {}), {} thread(s)", options_.listen.toString(),
                 port_, threads);
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { runLoop(); });
  }

  void stop() {
    if (!ioc_) return;
    work_.reset();
    ioc_->stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    // Before the io_context goes: the feed must stop posting to it.
    if (options_.live != nullptr) options_.live->unbind();
    beast::error_code ignored;
    if (acceptor_) acceptor_->close(ignored);
    acceptTimer_.reset();
    acceptor_.reset();
    // Destroying the io_context destroys the pending handlers and with them every session.
    ioc_.reset();
    spdlog::info("http api stopped");
  }

  std::uint16_t port() const { return port_; }

 private:
  void bind() {
    const auto& listen = options_.listen;
    tcp::resolver resolver(*ioc_);
    beast::error_code ec;
    const auto endpoints =
        resolver.resolve(listen.host, std::to_string(listen.port), tcp::resolver::passive, ec);
    if (ec) {
      throw std::runtime_error("http api: cannot resolve '" + listen.host + "': " + ec.message());
    }
    std::string lastError = "no address";
    for (const auto& entry : endpoints) {
      tcp::acceptor acceptor(asio::make_strand(*ioc_));
      const tcp::endpoint endpoint = entry.endpoint();
      acceptor.open(endpoint.protocol(), ec);
      if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor.bind(endpoint, ec);
      if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        lastError = ec.message();
        continue;
      }
      port_ = acceptor.local_endpoint().port();
      acceptor_.emplace(std::move(acceptor));
      return;
    }
    throw std::runtime_error("http api: cannot listen on " + listen.toString() + ": " + lastError);
  }

  void doAccept() {
    acceptor_->async_accept(
        asio::make_strand(*ioc_),
        [this](beast::error_code ec, tcp::socket socket) { onAccept(ec, std::move(socket)); });
  }

  void onAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // E.g. out of file descriptors: pause instead of spinning on the same error.
      spdlog::warn("http api: accept failed: {}", ec.message());
      acceptTimer_->expires_after(kAcceptRetryDelay);
      acceptTimer_->async_wait([this](beast::error_code waitEc) {
        if (!waitEc) doAccept();
      });
      return;
    }
    // Only the accept handler adds sessions and it is never concurrent with itself, so the
    // check cannot race past the limit.
    const std::size_t open = shared_.connections.load(std::memory_order_relaxed);
    if (open < options_.maxConnections) {
      std::make_shared<Session>(std::move(socket), shared_, shared_.connections)->start();
    } else if (shared_.rejecting.load(std::memory_order_relaxed) < options_.maxConnections) {
      // Over the limit: a short-lived session answers 503 (and lingers at most kLingerTime).
      // When even those pile up, the socket is just closed.
      spdlog::warn("http api: {} connections open, rejecting a new one", open);
      std::make_shared<Session>(std::move(socket), shared_, shared_.rejecting)->reject();
    }
    doAccept();
  }

  void runLoop() {
    // A handler that throws must not take the API down: log and keep serving.
    for (;;) {
      try {
        ioc_->run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("http api: unexpected exception in the event loop: {}", e.what());
      } catch (...) {
        spdlog::error("http api: unexpected non-standard exception in the event loop");
      }
    }
  }

  ApiOptions options_;
  Router router_;
  SharedState shared_;
  std::uint16_t port_ = 0;
  // Declared after the state sessions reference, so they are destroyed first.
  std::optional<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> acceptTimer_;
  std::vector<std::thread> threads_;
};

HttpServer::HttpServer(storage::Store& store, ApiOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() {
  impl_->start();
}
void HttpServer::stop() {
  impl_->stop();
}
std::uint16_t HttpServer::port() const {
  return impl_->port();
}

}  // namespace tern::api
