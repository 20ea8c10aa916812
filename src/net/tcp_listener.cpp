#include "net/tcp_listener.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>
#include <stdexcept>
#include <string_view>

#include "net/proxy_protocol.h"

namespace tern::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The socket's own peer, as the connection would see it without a proxy.
AcceptedConnection plainConnection(LoopSocket socket) {
  AcceptedConnection accepted{std::move(socket), "?", {}, {}};
  boost::system::error_code ec;
  auto remote = accepted.socket.remote_endpoint(ec);
  if (!ec) {
    accepted.remoteIp = remote.address().to_string();
    accepted.remoteAddress = formatEndpoint(accepted.remoteIp, remote.port());
  }
  return accepted;
}

// Reads one PROXY header on the socket's own loop, then hands the connection on with the
// client's real address and whatever protocol bytes came with the header. Bounded in time
// (kProxyHeaderTimeout) and size (kProxyMaxHeaderLength: the parser decides within that).
class ProxyHeaderReader : public std::enable_shared_from_this<ProxyHeaderReader> {
 public:
  ProxyHeaderReader(LoopSocket socket, std::string_view listener,
                    std::shared_ptr<const TcpListener::OnAccept> onAccept,
                    std::shared_ptr<std::atomic<std::size_t>> pending)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        listener_(listener),
        onAccept_(std::move(onAccept)),
        pending_(std::move(pending)) {}
  ~ProxyHeaderReader() { pending_->fetch_sub(1, std::memory_order_relaxed); }
  ProxyHeaderReader(const ProxyHeaderReader&) = delete;
  ProxyHeaderReader& operator=(const ProxyHeaderReader&) = delete;

  asio::any_io_executor executor() { return socket_.get_executor(); }

  // On the socket's loop.
  void start() {
    boost::system::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (!ec) {
      socketIp_ = remote.address().to_string();
      socketPeer_ = formatEndpoint(socketIp_, remote.port());
    }
    buffer_.resize(kProxyMaxHeaderLength);
    timer_.expires_after(TcpListener::kProxyHeaderTimeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      if (!error && !self->done_) self->fail("no PROXY header within 5 s");
    });
    read();
  }

 private:
  void read() {
    socket_.async_read_some(
        asio::buffer(buffer_.data() + used_, buffer_.size() - used_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t bytes) {
          self->onRead(ec, bytes);
        });
  }

  void onRead(const boost::system::error_code& ec, std::size_t bytes) {
    if (done_) return;
    if (ec) {
      fail(ec == asio::error::eof ? std::string("closed before sending a PROXY header")
                                  : "connection lost before a PROXY header: " + ec.message());
      return;
    }
    used_ += bytes;
    ProxyParseResult header = parseProxyHeader(std::string_view(buffer_.data(), used_));
    switch (header.status) {
      case ProxyParseStatus::kNeedMore:
        // The parser decides within kProxyMaxHeaderLength bytes; a full buffer cannot wait.
        if (used_ >= buffer_.size()) {
          fail("PROXY header too long");
          return;
        }
        read();
        return;
      case ProxyParseStatus::kInvalid:
        fail(std::string("invalid PROXY header: ") +
             (header.error != nullptr ? header.error : "malformed"));
        return;
      case ProxyParseStatus::kOk:
        break;
    }
    done_ = true;
    timer_.cancel();
    AcceptedConnection accepted{std::move(socket_), socketPeer_, socketIp_, {}};
    if (header.hasAddress()) {
      accepted.remoteIp = header.sourceAddress;
      accepted.remoteAddress = formatEndpoint(header.sourceAddress, header.sourcePort);
    }
    accepted.initialBytes.assign(buffer_.data() + header.length, used_ - header.length);
    spdlog::debug("{}: PROXY v{} header from {}: client {}", listener_, header.version, socketPeer_,
                  accepted.remoteAddress);
    (*onAccept_)(std::move(accepted));
  }

  void fail(const std::string& reason) {
    done_ = true;
    spdlog::warn("{}: closing connection from {}: {}", listener_, socketPeer_, reason);
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  LoopSocket socket_;
  asio::steady_timer timer_;
  std::string listener_;
  std::shared_ptr<const TcpListener::OnAccept> onAccept_;
  std::shared_ptr<std::atomic<std::size_t>> pending_;
  std::string socketPeer_ = "?";
  std::string socketIp_;
  std::string buffer_;
  std::size_t used_ = 0;
  bool done_ = false;
};

}  // namespace

std::string formatEndpoint(const std::string& ip, std::uint16_t port) {
  const bool v6 = ip.find(':') != std::string::npos;
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

TcpListener::TcpListener(EventLoopPool& pool, std::string name, OnAccept onAccept)
    : pool_(pool),
      name_(std::move(name)),
      onAccept_(std::make_shared<const OnAccept>(std::move(onAccept))),
      acceptor_(pool.loop(0)),
      pendingProxyHeaders_(std::make_shared<std::atomic<std::size_t>>(0)) {}

void TcpListener::start(const core::HostPort& address) {
  boost::system::error_code ec;
  tcp::resolver resolver(pool_.loop(0));
  auto results = resolver.resolve(address.host, std::to_string(address.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(name_ + ": cannot resolve " + address.toString() + ": " +
                             ec.message());
  }
  tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(name_ + ": cannot listen on " + address.toString() + ": " +
                             ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  spdlog::info("{}: listening on {}:{}{}", name_, address.host, port_,
               proxyProtocol_ ? " (PROXY protocol expected)" : "");
  asio::post(acceptor_.get_executor(), [this] { acceptNext(); });
}

void TcpListener::stop() {
  // The acceptor belongs to loop 0: close it there, and wait so the caller knows it is done.
  std::promise<void> done;
  auto future = done.get_future();
  asio::post(acceptor_.get_executor(), [this, &done] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    done.set_value();
  });
  if (future.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    spdlog::warn("{}: listener did not stop in time", name_);
  }
}

void TcpListener::acceptNext() {
  if (!acceptor_.is_open()) return;
  // The socket is created on the loop that will own the connection.
  // Accepting with the io_context (not an executor) yields a socket of its concrete executor.
  acceptor_.async_accept(pool_.next(), [this](boost::system::error_code ec, LoopSocket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and friends: log, back off briefly, keep accepting.
      spdlog::warn("{}: accept failed: {}", name_, ec.message());
      auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor());
      timer->expires_after(std::chrono::milliseconds(50));
      timer->async_wait([this, timer](boost::system::error_code) { acceptNext(); });
      return;
    }
    if (!proxyProtocol_) {
      (*onAccept_)(plainConnection(std::move(socket)));
    } else if (pendingProxyHeaders_->load(std::memory_order_relaxed) >= kMaxPendingProxyHeaders) {
      AcceptedConnection refused = plainConnection(std::move(socket));
      spdlog::warn("{}: refusing connection from {}: {} connections still owe a PROXY header",
                   name_, refused.remoteAddress, kMaxPendingProxyHeaders);
      boost::system::error_code ignored;
      refused.socket.close(ignored);
    } else {
      pendingProxyHeaders_->fetch_add(1, std::memory_order_relaxed);
      auto reader = std::make_shared<ProxyHeaderReader>(std::move(socket), name_, onAccept_,
                                                        pendingProxyHeaders_);
      asio::post(reader->executor(), [reader] { reader->start(); });
    }
    acceptNext();
  });
}

}  // namespace tern::net
