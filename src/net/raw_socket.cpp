#include "net/raw_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <cerrno>
#include <utility>

namespace tern::net {

namespace {

boost::system::error_code fromErrno(int error) {
  if (error == EAGAIN || error == EWOULDBLOCK) return boost::asio::error::would_block;
  return {error, boost::system::system_category()};
}

}  // namespace

RawSocket::RawSocket(LoopSocket socket) : loop_(&socket.get_executor().context()) {
  boost::system::error_code ec;
  socket.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  socket.non_blocking(true, ec);
  if (!ec) {
    // Deregisters it from the Asio reactor; the reactor's state goes back to its pool.
    fd_ = socket.release(ec);
  }
  if (ec) {
    fd_ = -1;
    boost::system::error_code ignored;
    socket.close(ignored);
  }
}

RawSocket::RawSocket(RawSocket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      interest_(other.interest_),
      token_(other.token_),
      loop_(other.loop_),
      poller_(std::exchange(other.poller_, nullptr)) {}

RawSocket& RawSocket::operator=(RawSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    interest_ = other.interest_;
    token_ = other.token_;
    loop_ = other.loop_;
    poller_ = std::exchange(other.poller_, nullptr);
  }
  return *this;
}

boost::system::error_code RawSocket::attach(FdPoller& poller, FdPoller::Client& client,
                                            std::uint32_t interest) {
  if (fd_ < 0) return boost::asio::error::bad_descriptor;
  if (const int error = poller.add(fd_, client, interest, token_); error != 0) {
    return fromErrno(error);
  }
  poller_ = &poller;
  interest_ = interest;
  return {};
}

void RawSocket::want(std::uint32_t interest) {
  if (interest == interest_ || poller_ == nullptr || fd_ < 0) return;
  // Fails only for a closed fd, whose next read or write reports it.
  if (poller_->modify(fd_, token_, interest) == 0) interest_ = interest;
}

boost::system::error_code RawSocket::readSome(boost::asio::mutable_buffer buffer,
                                              std::size_t& bytes) {
  bytes = 0;
  if (fd_ < 0) return boost::asio::error::bad_descriptor;
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n > 0) {
      bytes = static_cast<std::size_t>(n);
      return {};
    }
    if (n == 0) return boost::asio::error::eof;
    if (errno != EINTR) return fromErrno(errno);
  }
}

boost::system::error_code RawSocket::writeSome(boost::asio::const_buffer buffer,
                                               std::size_t& bytes) {
  bytes = 0;
  if (fd_ < 0) return boost::asio::error::bad_descriptor;
  for (;;) {
    const ssize_t n = ::send(fd_, buffer.data(), buffer.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      bytes = static_cast<std::size_t>(n);
      return {};
    }
    if (errno != EINTR) return fromErrno(errno);
  }
}

void RawSocket::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  close();
}

void RawSocket::close() {
  if (fd_ < 0) return;
  if (poller_ != nullptr) poller_->remove(fd_, token_);
  poller_ = nullptr;
  ::close(fd_);
  fd_ = -1;
}

}  // namespace tern::net
