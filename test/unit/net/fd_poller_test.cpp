// FdPoller and RawSocket on a real io_context with real loopback TCP sockets: readiness follows
// the interest, a client removed earlier in a sweep hears nothing more, a full socket reports
// writability again once drained, a reset is reported whatever the interest, and a destroyed
// poller lets go of its clients.
#include "net/fd_poller.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/loop_socket.h"
#include "net/raw_socket.h"

namespace tern::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// A connected pair on loopback: `raw` (taken out of Asio) and an ordinary Asio socket `peer`.
struct Pair {
  explicit Pair(asio::io_context& io) : peer(io) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    LoopSocket accepted(io);
    acceptor.accept(accepted);
    raw = std::make_unique<RawSocket>(std::move(accepted));
  }
  std::unique_ptr<RawSocket> raw;
  tcp::socket peer;
};

class Recorder : public FdPoller::Client {
 public:
  void onFdReady(std::uint32_t ready) override {
    events.push_back(ready);
    if (onReady) onReady(ready);
  }
  void onPollerGone() override {
    ++gone;
    if (socket != nullptr) {
      socket->forgetPoller();
      socket->close();
    }
  }
  std::vector<std::uint32_t> events;
  std::function<void(std::uint32_t)> onReady;
  RawSocket* socket = nullptr;
  int gone = 0;
};

// Runs the loop until `done` or 5 s (a real socket on loopback answers in microseconds).
void runUntil(asio::io_context& io, const std::function<bool()>& done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
}

// The first thing `client` was told, once it was told something (0: nothing within 5 s).
std::uint32_t firstEvent(asio::io_context& io, const Recorder& client) {
  runUntil(io, [&] { return !client.events.empty(); });
  return client.events.empty() ? 0 : client.events[0];
}

TEST(FdPollerTest, ReportsReadabilityOnlyWhileWanted) {
  asio::io_context io;
  FdPoller poller(io);
  Pair pair(io);
  Recorder client;
  ASSERT_FALSE(pair.raw->attach(poller, client, 0));
  EXPECT_EQ(poller.size(), 1u);

  asio::write(pair.peer, asio::buffer(std::string("hello")));
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(client.events.empty()) << "readable, but nobody asked";

  // Level-triggered: told on every sweep until the bytes are read or the interest is dropped.
  pair.raw->want(FdPoller::kRead);
  runUntil(io, [&] { return client.events.size() >= 2; });
  ASSERT_GE(client.events.size(), 2u);
  EXPECT_NE(client.events[0] & FdPoller::kRead, 0u);

  char buffer[16];
  std::size_t n = 0;
  ASSERT_FALSE(pair.raw->readSome(asio::buffer(buffer), n));
  EXPECT_EQ(std::string(buffer, n), "hello");
  EXPECT_EQ(pair.raw->readSome(asio::buffer(buffer), n), asio::error::would_block);
  client.events.clear();
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(client.events.empty()) << "nothing left to read";

  // The peer's FIN reads as eof.
  pair.peer.shutdown(tcp::socket::shutdown_send);
  EXPECT_NE(firstEvent(io, client) & FdPoller::kRead, 0u);
  EXPECT_EQ(pair.raw->readSome(asio::buffer(buffer), n), asio::error::eof);
  pair.raw->close();
  EXPECT_EQ(poller.size(), 0u);
}

TEST(FdPollerTest, AFullSocketReportsWritableOnceTheRoomIsBack) {
  asio::io_context io;
  FdPoller poller(io);
  Pair pair(io);
  Recorder client;
  ASSERT_FALSE(pair.raw->attach(poller, client, 0));
  // Fill the socket: the peer does not read.
  const std::string chunk(64 * 1024, 'x');
  std::size_t sent = 0;
  for (int i = 0; i < 10'000; ++i) {
    std::size_t n = 0;
    const auto ec = pair.raw->writeSome(asio::buffer(chunk), n);
    if (ec == asio::error::would_block) break;
    ASSERT_FALSE(ec) << ec.message();
    sent += n;
  }
  ASSERT_GT(sent, 0u);
  pair.raw->want(FdPoller::kWrite);
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(client.events.empty()) << "still full";

  // The peer drains everything: writable again.
  std::vector<char> sink(1 << 20);
  std::size_t received = 0;
  while (received < sent) received += pair.peer.read_some(asio::buffer(sink));
  EXPECT_NE(firstEvent(io, client) & FdPoller::kWrite, 0u);
}

TEST(FdPollerTest, AResetIsReportedWhateverTheInterest) {
  asio::io_context io;
  FdPoller poller(io);
  Pair pair(io);
  Recorder client;
  ASSERT_FALSE(pair.raw->attach(poller, client, 0));
  // SO_LINGER 0: close sends RST.
  pair.peer.set_option(asio::socket_base::linger(true, 0));
  pair.peer.close();
  EXPECT_NE(firstEvent(io, client) & FdPoller::kHangup, 0u);
}

TEST(FdPollerTest, AClientRemovedEarlierInASweepHearsNothing) {
  asio::io_context io;
  FdPoller poller(io);
  Pair a(io);
  Pair b(io);
  Recorder first;
  Recorder second;
  ASSERT_FALSE(a.raw->attach(poller, first, FdPoller::kRead));
  ASSERT_FALSE(b.raw->attach(poller, second, FdPoller::kRead));
  // Whichever is told first closes the other; the other must not be called afterwards, even
  // though its event is in the same sweep.
  bool closedOther = false;
  first.onReady = [&](std::uint32_t) {
    if (!closedOther) {
      closedOther = true;
      b.raw->close();
    }
  };
  second.onReady = [&](std::uint32_t) {
    if (!closedOther) {
      closedOther = true;
      a.raw->close();
    }
  };
  asio::write(a.peer, asio::buffer(std::string("1")));
  asio::write(b.peer, asio::buffer(std::string("2")));
  runUntil(io, [&] { return closedOther; });
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(closedOther);
  // The survivor keeps being told (its byte is unread); the closed one was told at most never.
  EXPECT_TRUE(first.events.empty() != second.events.empty())
      << first.events.size() << " / " << second.events.size();
  EXPECT_EQ(poller.size(), 1u);

  // A new socket may reuse the freed slot: stale events for the old one do not reach it.
  Pair c(io);
  Recorder third;
  ASSERT_FALSE(c.raw->attach(poller, third, FdPoller::kRead));
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(third.events.empty());
}

TEST(FdPollerTest, ADestroyedPollerLetsGoOfItsClients) {
  asio::io_context io;
  auto poller = std::make_unique<FdPoller>(io);
  Pair pair(io);
  Recorder client;
  client.socket = pair.raw.get();
  ASSERT_FALSE(pair.raw->attach(*poller, client, FdPoller::kRead));
  poller.reset();
  EXPECT_EQ(client.gone, 1);
  EXPECT_FALSE(pair.raw->isOpen());
  // The peer sees the connection end.
  char byte = 0;
  boost::system::error_code ec;
  pair.peer.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

TEST(FdPollerTest, ManySocketsAtOnceAreAllServed) {
  // More ready sockets than one sweep takes (256): the rest are served by the continuation.
  asio::io_context io;
  FdPoller poller(io);
  constexpr int kSockets = 300;  // 600 descriptors: within a default limit of 1024
  std::vector<std::unique_ptr<Pair>> pairs;
  std::vector<std::unique_ptr<Recorder>> clients;
  int served = 0;
  for (int i = 0; i < kSockets; ++i) {
    pairs.push_back(std::make_unique<Pair>(io));
    clients.push_back(std::make_unique<Recorder>());
    RawSocket* raw = pairs.back()->raw.get();
    clients.back()->onReady = [raw, &served](std::uint32_t) {
      char buffer[8];
      std::size_t n = 0;
      if (!raw->readSome(asio::buffer(buffer), n)) {
        ++served;
        raw->want(0);
      }
    };
    ASSERT_FALSE(raw->attach(poller, *clients.back(), FdPoller::kRead));
  }
  for (auto& pair : pairs) asio::write(pair->peer, asio::buffer(std::string("x")));
  runUntil(io, [&] { return served == kSockets; });
  EXPECT_EQ(served, kSockets);
}

}  // namespace
}  // namespace tern::net
