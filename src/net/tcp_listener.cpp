#include "net/tcp_listener.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <future>
#include <stdexcept>

namespace tern::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TcpListener::TcpListener(EventLoopPool& pool, std::string name, OnAccept onAccept)
    : pool_(pool), name_(std::move(name)), onAccept_(std::move(onAccept)), acceptor_(pool.loop(0)) {}

void TcpListener::start(const core::HostPort& address) {
  boost::system::error_code ec;
  tcp::resolver resolver(pool_.loop(0));
  auto results = resolver.resolve(address.host, std::to_string(address.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(name_ + ": cannot resolve " + address.toString() + ": " + ec.message());
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
  spdlog::info("{}: listening on {}:{}", name_, address.host, port_);
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
  acceptor_.async_accept(pool_.next(), [this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and friends: log, back off briefly, keep accepting.
      spdlog::warn("{}: accept failed: {}", name_, ec.message());
      auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor());
      timer->expires_after(std::chrono::milliseconds(50));
      timer->async_wait([this, timer](boost::system::error_code) { acceptNext(); });
      return;
    }
    onAccept_(std::move(socket));
    acceptNext();
  });
}

}  // namespace tern::net
