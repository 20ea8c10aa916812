#pragma once
// Accepts TCP connections and hands each socket, already bound to one loop of the pool, to a
// callback. The acceptor itself runs on the first loop.
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "core/config.h"
#include "net/event_loop_pool.h"

namespace tern::net {

class TcpListener {
 public:
  using OnAccept = std::function<void(boost::asio::ip::tcp::socket socket)>;

  TcpListener(EventLoopPool& pool, std::string name, OnAccept onAccept);
  // Binds and listens. Throws std::runtime_error naming the address when it cannot bind.
  void start(const core::HostPort& address);
  // Stops accepting; existing connections are untouched. Thread-safe.
  void stop();
  std::uint16_t port() const { return port_; }

 private:
  void acceptNext();

  EventLoopPool& pool_;
  std::string name_;
  OnAccept onAccept_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
};

}  // namespace tern::net
