#pragma once
// A connected, non-blocking TCP socket that is not registered with Asio's reactor: its readiness
// comes from its loop's FdPoller (see fd_poller.h), and reads and writes are plain system calls
// that return at once. Owns the fd. Loop thread only once attached.
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>

#include "net/fd_poller.h"
#include "net/loop_socket.h"

namespace tern::net {

class RawSocket {
 public:
  // Takes the fd out of an Asio socket (deregistering it from that reactor), with TCP_NODELAY on
  // and in non-blocking mode. On failure the socket is closed and this holds no fd: every
  // operation then fails with bad_descriptor.
  explicit RawSocket(LoopSocket socket);
  ~RawSocket() { close(); }
  RawSocket(RawSocket&& other) noexcept;
  RawSocket& operator=(RawSocket&& other) noexcept;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  boost::asio::io_context& loop() const { return *loop_; }
  bool isOpen() const { return fd_ >= 0; }

  // On the loop: starts telling `client` about `interest` (FdPoller::kRead | kWrite).
  boost::system::error_code attach(FdPoller& poller, FdPoller::Client& client,
                                   std::uint32_t interest);
  // What the client wants to hear about now; a system call only when it changes.
  void want(std::uint32_t interest);
  // The poller went away (FdPoller::Client::onPollerGone): close without telling it.
  void forgetPoller() { poller_ = nullptr; }

  // Whatever is there now, up to the buffer's size. would_block when nothing is; eof when the
  // peer closed its side.
  boost::system::error_code readSome(boost::asio::mutable_buffer buffer, std::size_t& bytes);
  // As much as the socket takes now (would_block: none of it).
  boost::system::error_code writeSome(boost::asio::const_buffer buffer, std::size_t& bytes);

  // FIN both ways, then close.
  void shutdown();
  void close();

 private:
  int fd_ = -1;
  std::uint32_t interest_ = 0;
  std::uint64_t token_ = 0;
  boost::asio::io_context* loop_ = nullptr;
  FdPoller* poller_ = nullptr;
};

}  // namespace tern::net
