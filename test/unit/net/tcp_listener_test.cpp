// TcpListener over real loopback sockets: plain accepts, and the PROXY header read on the
// connection's loop (split arbitrarily, followed by protocol bytes that must not be lost).
#include "net/tcp_listener.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace tern::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace std::string_literals;

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

class TcpListenerTest : public ::testing::Test {
 protected:
  void startListener(bool proxy) {
    pool_.start();
    listener_ = std::make_unique<TcpListener>(pool_, "test", [this](AcceptedConnection accepted) {
      std::lock_guard lock(mutex_);
      accepted_.push_back(std::move(accepted));
      ready_.notify_all();
    });
    listener_->setProxyProtocol(proxy);
    listener_->start(core::HostPort{"127.0.0.1", 0});
  }

  void TearDown() override {
    if (listener_) listener_->stop();
    {
      std::lock_guard lock(mutex_);
      for (auto& a : accepted_) {
        boost::system::error_code ignored;
        a.socket.close(ignored);
      }
    }
    pool_.stop();
    accepted_.clear();
  }

  std::optional<AcceptedConnection> nextAccepted(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [this] { return !accepted_.empty(); })) return std::nullopt;
    AcceptedConnection out = std::move(accepted_.front());
    accepted_.pop_front();
    return out;
  }

  tcp::socket connect() {
    tcp::socket socket(io_);
    socket.connect({asio::ip::make_address("127.0.0.1"), listener_->port()});
    socket.set_option(tcp::no_delay(true));
    return socket;
  }

  // True when the peer closes `socket` within `timeout` (reads and discards until EOF).
  static bool closedByPeer(tcp::socket& socket, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{socket.native_handle(), POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (::poll(&pfd, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) continue;
      char chunk[256];
      boost::system::error_code ec;
      std::size_t n = socket.read_some(asio::buffer(chunk), ec);
      if (ec || n == 0) return true;
    }
    return false;
  }

  // Everything the server side received: the listener's initial bytes, then the socket.
  static std::string receivedByServer(AcceptedConnection& accepted, std::size_t want) {
    std::string out = accepted.initialBytes;
    if (out.size() < want) {
      std::string rest(want - out.size(), '\0');
      asio::read(accepted.socket, asio::buffer(rest));
      out += rest;
    }
    return out;
  }

  EventLoopPool pool_{2};
  asio::io_context io_;
  std::unique_ptr<TcpListener> listener_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<AcceptedConnection> accepted_;
};

TEST(FormatEndpointTest, BracketsIpv6) {
  EXPECT_EQ(formatEndpoint("192.0.2.1", 80), "192.0.2.1:80");
  EXPECT_EQ(formatEndpoint("2001:db8::1", 1883), "[2001:db8::1]:1883");
}

TEST_F(TcpListenerTest, PlainListenerReportsTheSocketPeer) {
  startListener(false);
  tcp::socket client = connect();
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  const std::uint16_t clientPort = client.local_endpoint().port();
  EXPECT_EQ(accepted->remoteAddress, "127.0.0.1:" + std::to_string(clientPort));
  EXPECT_EQ(accepted->remoteIp, "127.0.0.1");
  EXPECT_TRUE(accepted->initialBytes.empty());
  // A PROXY header is just data here; the listener does not look at it.
  asio::write(client, asio::buffer(std::string("PROXY UNKNOWN\r\n")));
  EXPECT_EQ(receivedByServer(*accepted, 15), "PROXY UNKNOWN\r\n");
}

TEST_F(TcpListenerTest, V1HeaderAndDataInOneWrite) {
  startListener(true);
  tcp::socket client = connect();
  const std::string payload = "protocol bytes \x10\x00 after the header"s;
  asio::write(client, asio::buffer("PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n" + payload));
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "192.0.2.10:51234");
  EXPECT_EQ(accepted->remoteIp, "192.0.2.10");
  EXPECT_EQ(receivedByServer(*accepted, payload.size()), payload);
  // The connection keeps working in both directions.
  asio::write(accepted->socket, asio::buffer(std::string("pong")));
  std::string reply(4, '\0');
  asio::read(client, asio::buffer(reply));
  EXPECT_EQ(reply, "pong");
}

TEST_F(TcpListenerTest, HeaderByteAtATime) {
  startListener(true);
  tcp::socket client = connect();
  const std::string header = "PROXY TCP6 2001:db8::7 2001:db8::1 40000 1883\r\n";
  for (char c : header) {
    asio::write(client, asio::buffer(&c, 1));
    std::this_thread::sleep_for(2ms);
  }
  // Nothing is handed on before the header is complete... and then at once.
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "[2001:db8::7]:40000");
  EXPECT_EQ(accepted->remoteIp, "2001:db8::7");
  asio::write(client, asio::buffer(std::string("xyz")));
  EXPECT_EQ(receivedByServer(*accepted, 3), "xyz");
}

TEST_F(TcpListenerTest, V2HeaderWithTlvsAndData) {
  startListener(true);
  tcp::socket client = connect();
  std::string block;
  for (int b : {203, 0, 113, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x07, 0x5b})
    block.push_back(static_cast<char>(b));
  block += std::string("\x04\x00\x03zzz", 6);  // a NOOP TLV
  std::string header = kSignature + "\x21\x11";
  header.push_back(0);
  header.push_back(static_cast<char>(block.size()));
  header += block;
  const std::string payload(5000,
                            'p');  // more than the header buffer: the rest stays in the socket
  asio::write(client, asio::buffer(header + payload));
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "203.0.113.7:8080");
  EXPECT_EQ(receivedByServer(*accepted, payload.size()), payload);
}

TEST_F(TcpListenerTest, LocalAndUnknownKeepTheSocketPeer) {
  startListener(true);
  tcp::socket client = connect();
  const std::uint16_t clientPort = client.local_endpoint().port();
  std::string local = kSignature + "\x20";
  local += std::string(3, '\0');
  asio::write(client, asio::buffer(local));
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "127.0.0.1:" + std::to_string(clientPort));

  tcp::socket other = connect();
  asio::write(other, asio::buffer(std::string("PROXY UNKNOWN\r\nabc")));
  accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "127.0.0.1:" + std::to_string(other.local_endpoint().port()));
  EXPECT_EQ(receivedByServer(*accepted, 3), "abc");
}

TEST_F(TcpListenerTest, InvalidHeaderIsClosed) {
  startListener(true);
  for (const std::string& bad :
       {std::string("\x10\x0c\x00\x04MQTT", 8),
        std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"),
        std::string("PROXY ") + std::string(200, 'x'), kSignature + "\x21\x12"}) {
    tcp::socket client = connect();
    asio::write(client, asio::buffer(bad));
    EXPECT_TRUE(closedByPeer(client, 3000ms)) << bad;
  }
  EXPECT_FALSE(nextAccepted(200ms));
}

TEST_F(TcpListenerTest, ClientLeavingBeforeTheHeaderIsNotHandedOn) {
  startListener(true);
  {
    tcp::socket client = connect();
    asio::write(client, asio::buffer(std::string("PROXY TCP4 1.2")));
  }
  EXPECT_FALSE(nextAccepted(300ms));
  // The listener still serves others.
  tcp::socket client = connect();
  asio::write(client, asio::buffer(std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")));
  auto accepted = nextAccepted();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->remoteAddress, "1.2.3.4:1");
}

TEST_F(TcpListenerTest, SilentConnectionIsClosedAfterTheTimeout) {
  startListener(true);
  tcp::socket client = connect();
  auto started = std::chrono::steady_clock::now();
  // A partial header does not extend the deadline.
  asio::write(client, asio::buffer(std::string("PROXY TCP4 ")));
  EXPECT_TRUE(closedByPeer(client, TcpListener::kProxyHeaderTimeout + 3s));
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_GE(elapsed, TcpListener::kProxyHeaderTimeout - 500ms);
  EXPECT_FALSE(nextAccepted(100ms));
}

}  // namespace
}  // namespace tern::net
