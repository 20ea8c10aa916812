#pragma once
// Readiness of plain TCP sockets for one event loop, through an epoll instance of its own that
// the loop watches as a single descriptor. An Asio socket costs about 300 bytes while it waits
// (the reactor's per-descriptor state and the pending wait operation); a socket here costs one
// 16-byte slot. That is what lets an idle MQTT connection cost less than Mosquitto's.
//
// Level-triggered: a client says what it wants to hear about (read, write) and is told on every
// sweep until it says otherwise, so it never has to drain a socket to see the next event. The
// loop's own thread only.
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/basic_stream_descriptor.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tern::net {

class FdPoller {
 public:
  static constexpr std::uint32_t kRead = 1;
  static constexpr std::uint32_t kWrite = 2;
  // Reported only: the socket failed or both directions are shut (RST). Reported whatever the
  // interest, so a client that is reading or writing nothing must close on it.
  static constexpr std::uint32_t kHangup = 4;

  class Client {
   public:
    // What happened: kRead (readable, or the peer closed: a read says which), kWrite
    // (writable, or the socket failed: a write says which), kHangup.
    virtual void onFdReady(std::uint32_t ready) = 0;
    // The poller is being destroyed with this client still watched (its loop stopped with the
    // connection open): forget the poller, close the socket.
    virtual void onPollerGone() = 0;

   protected:
    ~Client() = default;
  };

  // Throws std::system_error when no epoll instance can be made (start-up only).
  explicit FdPoller(boost::asio::io_context& loop);
  ~FdPoller();
  FdPoller(const FdPoller&) = delete;
  FdPoller& operator=(const FdPoller&) = delete;

  boost::asio::io_context& loop() { return loop_; }

  // Starts watching `fd` for `interest` (kRead | kWrite). Returns 0 and the slot's token, or an
  // errno.
  int add(int fd, Client& client, std::uint32_t interest, std::uint64_t& token);
  // Changes the interest of a watched fd. Returns 0 or an errno.
  int modify(int fd, std::uint64_t token, std::uint32_t interest);
  // Stops watching (before the fd is closed). Events of this sweep for it are dropped.
  void remove(int fd, std::uint64_t token);

  // Watched fds (tests, stats).
  std::size_t size() const { return live_; }

 private:
  struct Slot {
    Client* client = nullptr;
    std::uint32_t generation = 0;  // bumped on remove: a stale event's token no longer matches
  };

  void arm();
  void sweep();

  boost::asio::io_context& loop_;
  boost::asio::posix::basic_stream_descriptor<boost::asio::io_context::executor_type> epoll_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t live_ = 0;
  bool armed_ = false;
  bool destroying_ = false;
};

}  // namespace tern::net
