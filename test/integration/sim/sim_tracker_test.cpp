// `tern sim tracker` against a real Tern server, one protocol at a time: every owed answer
// arrives exactly as the protocol notes prescribe, and the store holds every position sent.
// Plus a reconnect against a small fake server that drops the first connection.
#include "tools/sim_tracker.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <thread>

#include "codec/trackers/protocol.h"
#include "storage/store.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr unsigned kDevices = 20;
constexpr std::uint64_t kPositionsPerDevice = 5;

// Positions nobody answers may still be on their way to the store when the simulator returns.
std::int64_t storedEventually(TestServer& server, std::int64_t want) {
  std::int64_t count = 0;
  for (int i = 0; i < 100; ++i) {
    count = *server.server().store().countMessages();
    if (count >= want) break;
    std::this_thread::sleep_for(50ms);
  }
  return count;
}

class SimTrackerProtocol : public ::testing::TestWithParam<std::string> {};

TEST_P(SimTrackerProtocol, EveryAnswerMatchesAndEveryPositionIsStored) {
  const std::string protocol = GetParam();
  TestServer server([&](core::Config& c) {
    c.trackers.enabled = {protocol};
    c.trackers.ports[protocol] = 0;
  });
  tools::SimTrackerOptions options;
  options.protocol = protocol;
  options.port = server.server().trackerPorts().at(protocol);
  options.devices = kDevices;
  options.count = kPositionsPerDevice;
  options.rateSeconds = 0;
  options.heartbeatEvery = 2;
  options.threads = 2;
  const tools::SimTrackerResult result = tools::runSimTracker(options);
  const std::string summary = tools::formatSimTrackerSummary(result, 0);

  EXPECT_EQ(result.ackMismatches, 0u) << summary;
  EXPECT_EQ(result.errors, 0u) << summary;
  EXPECT_EQ(result.reconnects, 0u) << summary;
  EXPECT_EQ(result.sent, kDevices * kPositionsPerDevice) << summary;
  EXPECT_GT(result.ackExpected, 0u) << summary;
  EXPECT_EQ(result.acked, result.ackExpected) << summary;
  if (protocol != "osmand") {  // OsmAnd has no heartbeat
    EXPECT_GE(result.heartbeats, kDevices * 2) << summary;
  }
  EXPECT_TRUE(tools::simTrackerSucceeded(result)) << summary;
  const auto records = static_cast<std::int64_t>(result.records);
  EXPECT_GE(records, static_cast<std::int64_t>(result.sent));
  EXPECT_EQ(storedEventually(server, records), records) << summary;
}

INSTANTIATE_TEST_SUITE_P(SimTracker, SimTrackerProtocol,
                         ::testing::Values("gt06", "teltonika", "h02", "tk103", "gps103", "gl200",
                                           "meitrack", "ruptela", "osmand"),
                         [](const auto& param) { return param.param; });

// A GT06 "server" that answers with Tern's codec but drops the first connection when the
// first position arrives, unanswered: the device must reconnect, log in again and resend it.
class DroppingGt06Server {
 public:
  DroppingGt06Server() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~DroppingGt06Server() {
    asio::post(io_, [this] { io_.stop(); });
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // Read after the simulator has returned (the io thread is idle by then).
  int connections() const { return connections_; }
  int positions() const { return positions_; }

 private:
  struct Connection {
    explicit Connection(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::unique_ptr<codec::trackers::ProtocolCodec> codec =
        codec::trackers::findProtocol("gt06")->create();
    codec::trackers::SessionState session;
    std::string rx;
    std::array<char, 1024> chunk{};
    bool first = false;
  };

  void accept() {
    auto connection = std::make_shared<Connection>(io_);
    acceptor_.async_accept(connection->socket, [this, connection](boost::system::error_code ec) {
      if (ec) return;
      connection->first = ++connections_ == 1;
      read(connection);
      accept();
    });
  }

  void read(const std::shared_ptr<Connection>& c) {
    c->socket.async_read_some(
        asio::buffer(c->chunk), [this, c](boost::system::error_code ec, std::size_t n) {
          if (ec) return;
          c->rx.append(c->chunk.data(), n);
          while (true) {
            codec::trackers::FrameResult split = c->codec->splitFrame(c->rx);
            if (split.status != codec::trackers::FrameStatus::kOk) break;
            const std::string frame = c->rx.substr(0, split.size);
            c->rx.erase(0, split.size);
            codec::trackers::DecodeResult r = c->codec->decode(frame, c->session, 0);
            if (!r.positions.empty()) {
              ++positions_;
              if (c->first) {
                c->socket.close();
                return;
              }
            }
            if (!r.response.empty()) {
              boost::system::error_code ignored;
              asio::write(c->socket, asio::buffer(r.response), ignored);
            }
          }
          read(c);
        });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  int connections_ = 0;
  int positions_ = 0;
};

TEST(SimTrackerTest, ReconnectsLogsInAgainAndResendsTheUnansweredPosition) {
  DroppingGt06Server server;
  tools::SimTrackerOptions options;
  options.protocol = "gt06";
  options.port = server.port();
  options.devices = 1;
  options.count = 3;
  options.rateSeconds = 0;
  options.heartbeatEvery = 0;
  const tools::SimTrackerResult result = tools::runSimTracker(options);
  const std::string summary = tools::formatSimTrackerSummary(result, 0);

  EXPECT_EQ(result.sent, 3u) << summary;
  EXPECT_EQ(result.reconnects, 1u) << summary;
  EXPECT_EQ(result.errors, 1u) << summary;  // the dropped connection
  EXPECT_EQ(result.ackMismatches, 0u) << summary;
  EXPECT_EQ(result.logins, 2u) << summary;
  // Two logins and three positions answered; the first login's answer came before the drop.
  EXPECT_EQ(result.acked, result.ackExpected) << summary;
  EXPECT_EQ(result.ackExpected, 5u) << summary;
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(server.positions(), 4);  // the first position twice
}

TEST(SimTrackerTest, UnknownProtocolIsRejected) {
  tools::SimTrackerOptions options;
  options.protocol = "nmea";
  EXPECT_THROW(tools::runSimTracker(options), std::invalid_argument);
}

}  // namespace
}  // namespace tern::test
