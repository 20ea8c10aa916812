#pragma once
// Accepts TCP connections and hands each socket, already bound to one loop of the pool, to a
// callback. The acceptor itself runs on the first loop. Optionally (setProxyProtocol) each
// connection must first send a PROXY protocol header (v1 or v2), read on the socket's own loop,
// which names the client's real address behind a load balancer.
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/config.h"
#include "net/event_loop_pool.h"
#include "net/loop_socket.h"

namespace tern::net {

// An accepted connection, ready for its protocol.
struct AcceptedConnection {
  LoopSocket socket;  // on the loop that will own the connection
  // The client, for logs and limits: "203.0.113.7:51234" or "[2001:db8::1]:51234"; "?" when
  // unknown. From the PROXY header when the listener expects one, else the socket's peer.
  std::string remoteAddress;
  // Just the address part ("203.0.113.7"), empty when unknown.
  std::string remoteIp;
  // Bytes that arrived after the PROXY header in the same reads. They belong to the protocol:
  // the connection must process them before reading the socket.
  std::string initialBytes;
};

// "ip:port", IPv6 in brackets.
std::string formatEndpoint(const std::string& ip, std::uint16_t port);

class TcpListener {
 public:
  // Called once per connection, on loop 0 (plain) or on the socket's own loop (after a PROXY
  // header); either way, build the connection on connection.socket.get_executor().
  using OnAccept = std::function<void(AcceptedConnection connection)>;

  TcpListener(EventLoopPool& pool, std::string name, OnAccept onAccept);
  // Expect a PROXY protocol header (v1 or v2) first on every connection. Call before start().
  // A connection that does not send a valid one within kProxyHeaderTimeout is closed.
  void setProxyProtocol(bool enabled) { proxyProtocol_ = enabled; }
  bool proxyProtocol() const { return proxyProtocol_; }
  // Binds and listens. Throws std::runtime_error naming the address when it cannot bind.
  void start(const core::HostPort& address);
  // Stops accepting; existing connections are untouched. Thread-safe.
  void stop();
  std::uint16_t port() const { return port_; }

  static constexpr std::chrono::seconds kProxyHeaderTimeout{5};
  // Connections still owing their PROXY header, beyond which new ones are refused.
  static constexpr std::size_t kMaxPendingProxyHeaders = 4096;

 private:
  void acceptNext();

  EventLoopPool& pool_;
  std::string name_;
  // Shared with the PROXY header readers, which call it from the connections' loops.
  std::shared_ptr<const OnAccept> onAccept_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  bool proxyProtocol_ = false;
  // Shared with the header readers, which may outlive a call to stop().
  std::shared_ptr<std::atomic<std::size_t>> pendingProxyHeaders_;
};

}  // namespace tern::net
