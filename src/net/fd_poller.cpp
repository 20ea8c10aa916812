#include "net/fd_poller.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <system_error>

namespace tern::net {

namespace {

// Events taken per epoll_wait; a full sweep is continued through the loop's queue so that one
// busy poller does not hold up the loop's other work.
constexpr int kSweepEvents = 256;

std::uint64_t makeToken(std::uint32_t index, std::uint32_t generation) {
  return (std::uint64_t{generation} << 32) | index;
}

std::uint32_t epollEvents(std::uint32_t interest) {
  std::uint32_t events = 0;
  if ((interest & FdPoller::kRead) != 0) events |= EPOLLIN;
  if ((interest & FdPoller::kWrite) != 0) events |= EPOLLOUT;
  return events;  // EPOLLERR and EPOLLHUP are always reported
}

int openEpoll() {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}

}  // namespace

FdPoller::FdPoller(boost::asio::io_context& loop)
    : loop_(loop), epoll_(loop.get_executor(), openEpoll()) {}

FdPoller::~FdPoller() {
  destroying_ = true;
  // Clients still watched let go of this poller (and close their sockets) now, not later.
  for (Slot& slot : slots_) {
    if (Client* client = slot.client) {
      slot.client = nullptr;
      client->onPollerGone();
    }
  }
}

int FdPoller::add(int fd, Client& client, std::uint32_t interest, std::uint64_t& token) {
  std::uint32_t index = 0;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  token = makeToken(index, slot.generation);
  epoll_event event{};
  event.events = epollEvents(interest);
  event.data.u64 = token;
  if (::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, fd, &event) != 0) {
    const int error = errno;
    free_.push_back(index);
    return error;
  }
  slot.client = &client;
  ++live_;
  if (!armed_) arm();
  return 0;
}

int FdPoller::modify(int fd, std::uint64_t token, std::uint32_t interest) {
  epoll_event event{};
  event.events = epollEvents(interest);
  event.data.u64 = token;
  return ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_MOD, fd, &event) == 0 ? 0 : errno;
}

void FdPoller::remove(int fd, std::uint64_t token) {
  const auto index = static_cast<std::uint32_t>(token);
  if (index >= slots_.size() || slots_[index].generation != static_cast<std::uint32_t>(token >> 32))
    return;
  if (!destroying_) {
    // Fails only when the fd is already closed, which also ends the watch.
    ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, fd, nullptr);
  }
  Slot& slot = slots_[index];
  if (slot.client != nullptr) --live_;
  slot.client = nullptr;
  ++slot.generation;
  free_.push_back(index);
}

void FdPoller::arm() {
  armed_ = true;
  epoll_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                    [this](const boost::system::error_code& ec) {
                      if (ec == boost::asio::error::operation_aborted) return;  // destroyed
                      armed_ = false;
                      sweep();
                    });
}

void FdPoller::sweep() {
  std::array<epoll_event, kSweepEvents> events;
  int n = ::epoll_wait(epoll_.native_handle(), events.data(), kSweepEvents, 0);
  if (n < 0) n = 0;  // EINTR: the next wake-up sweeps again
  for (int i = 0; i < n; ++i) {
    const std::uint64_t token = events[static_cast<std::size_t>(i)].data.u64;
    const std::uint32_t got = events[static_cast<std::size_t>(i)].events;
    const auto index = static_cast<std::uint32_t>(token);
    // A client may have removed itself or another one earlier in this sweep.
    if (index >= slots_.size()) continue;
    Slot& slot = slots_[index];
    if (slot.client == nullptr || slot.generation != static_cast<std::uint32_t>(token >> 32)) {
      continue;
    }
    std::uint32_t ready = 0;
    if ((got & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) ready |= kRead;
    if ((got & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) ready |= kWrite;
    if ((got & (EPOLLHUP | EPOLLERR)) != 0) ready |= kHangup;
    slot.client->onFdReady(ready);
  }
  if (n == kSweepEvents) {
    // More may be ready: take them after what else the loop has queued. (The loop is stopped
    // before the poller is destroyed, so this never runs on a destroyed poller.)
    boost::asio::post(loop_, [this] { sweep(); });
    return;
  }
  // A client added during the sweep may have armed the wait already: never two at once.
  if (!armed_ && live_ > 0) arm();
}

}  // namespace tern::net
