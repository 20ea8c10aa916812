// Trackers over real TCP through the durable ingest path to the store, and OsmAnd over HTTP.
#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <thread>

#include "codec/trackers/util.h"
#include "storage/store.h"
#include "support/test_server.h"
#include "trackers/tracker_server.h"

namespace tern::test {
namespace {

namespace asio = boost::asio;
namespace trk = codec::trackers;
using namespace std::chrono_literals;

// A raw TCP "device": writes bytes, reads what the server answers.
class Device {
 public:
  explicit Device(std::uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  void sendHex(const std::string& hex) { send(*trk::fromHex(hex)); }
  // Reads whatever arrives within `timeout` (until `want` bytes, if given).
  std::string receive(std::chrono::milliseconds timeout = 3000ms, std::size_t want = 0) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline && (want == 0 || out.size() < want)) {
      pollfd pfd{socket_.native_handle(), POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (::poll(&pfd, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) break;
      char chunk[4096];
      boost::system::error_code ec;
      std::size_t n = socket_.read_some(asio::buffer(chunk), ec);
      if (ec || n == 0) {
        closed_ = true;
        break;
      }
      out.append(chunk, n);
    }
    return out;
  }
  std::string receiveHex(std::size_t want, std::chrono::milliseconds timeout = 3000ms) {
    return trk::toHex(receive(timeout, want));
  }
  bool closed() const { return closed_; }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  bool closed_ = false;
};

std::int64_t storedCount(TestServer& server) {
  return *server.server().store().countMessages();
}

TEST(TrackerGatewayTest, Gt06LoginPositionAckAfterCommit) {
  TestServer server([](core::Config& c) { c.trackers.enabled = {"gt06"}; });
  Device device(server.server().trackerPorts().at("gt06"));
  // A position before login is dropped without a reply.
  device.sendHex("787805120099abec0d0a");
  EXPECT_EQ(device.receive(300ms), "");
  // Login: IMEI 864717003283581 → the exact ACK.
  device.sendHex("78780D01086471700328358100093F040D0A");
  EXPECT_EQ(device.receiveHex(10), "78780501000955940d0a");
  // A GPS position (2015-10-20 14:21:11 UTC, 54.94535 N, 24.01762 E): ACK only after commit.
  device.sendHex("78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a");
  EXPECT_EQ(device.receiveHex(10), "787805120003903f0d0a");
  EXPECT_EQ(storedCount(server), 1);

  storage::MessageQuery query;
  query.deviceId = "864717003283581";
  auto records = server.server().store().queryMessages(query);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  const storage::Record& r = records->front().record;
  EXPECT_EQ(r.nodeId, "test-node");
  EXPECT_EQ(r.topic, "trackers/gt06");
  ASSERT_TRUE(r.deviceTimeUs);
  EXPECT_EQ(*r.deviceTimeUs, 1445350871LL * 1'000'000);
  double lat = 0;
  double lon = 0;
  for (const auto& f : r.fields) {
    if (f.key == "lat") lat = std::get<double>(f.value);
    if (f.key == "lon") lon = std::get<double>(f.value);
  }
  EXPECT_NEAR(lat, 54.94535, 1e-5);
  EXPECT_NEAR(lon, 24.01762, 1e-5);
}

TEST(TrackerGatewayTest, GarbageIsSkippedThenBoundedByClose) {
  TestServer server([](core::Config& c) { c.trackers.enabled = {"gt06"}; });
  Device device(server.server().trackerPorts().at("gt06"));
  // Noise before a login: the stream resynchronises at the frame start.
  device.send("hello, this is not gt06");
  device.sendHex("78780D01086471700328358100093F040D0A");
  EXPECT_EQ(device.receiveHex(10), "78780501000955940d0a");
  // Endless noise closes the connection past the bound; the server keeps serving others.
  std::string noise(128 * 1024, 'x');
  try {
    device.send(noise);
  } catch (const std::exception&) {
  }
  device.receive(3000ms);
  EXPECT_TRUE(device.closed());
  EXPECT_GT(server.server().trackers()->stats().skippedBytes, 0u);
  Device other(server.server().trackerPorts().at("gt06"));
  other.sendHex("78780D01086471700328358100093F040D0A");
  EXPECT_EQ(other.receiveHex(10), "78780501000955940d0a");
}

TEST(TrackerGatewayTest, TeltonikaUnknownImeiRefusedWhenRegistrationIsOff) {
  TestServer server([](core::Config& c) {
    c.trackers.enabled = {"teltonika"};
    c.trackers.registerUnknown = false;
  });
  Device device(server.server().trackerPorts().at("teltonika"));
  device.sendHex("000F313233343536373839303132333435");
  EXPECT_EQ(device.receiveHex(1), "00");
  EXPECT_EQ(server.server().trackers()->stats().refusedDevices, 1u);
}

TEST(TrackerGatewayTest, TeltonikaAcceptsAndAcksRecordCount) {
  TestServer server([](core::Config& c) { c.trackers.enabled = {"teltonika"}; });
  Device device(server.server().trackerPorts().at("teltonika"));
  device.sendHex("000F313233343536373839303132333435");
  EXPECT_EQ(device.receiveHex(1), "01");
  device.sendHex(
      "000000000000010e8e020000019769de9f9800015299f718b278040018007708000000000013000b");
  // Not a whole packet yet: nothing comes back until the rest arrives.
  EXPECT_EQ(device.receive(200ms), "");
}

TEST(TrackerGatewayTest, CommandsQueueWhileOfflineAndGoOutOnLogin) {
  TestServer server([](core::Config& c) { c.trackers.enabled = {"gt06"}; });
  auto* trackers = server.server().trackers();
  ASSERT_NE(trackers, nullptr);
  trk::Command command{trk::CommandType::kEngineStop, "", 1};
  auto queued = trackers->submitCommand("864717003283581", command, "engineStop");
  EXPECT_EQ(queued.status, trackers::CommandStatus::kQueued);
  Device device(server.server().trackerPorts().at("gt06"));
  device.sendHex("78780D01086471700328358100093F040D0A");
  // The login ACK, then the queued command (a 0x80 command packet).
  std::string answer = device.receive(2000ms, 11);
  ASSERT_GE(answer.size(), 10u);
  EXPECT_EQ(trk::toHex(answer.substr(0, 10)), "78780501000955940d0a");
  bool sent = false;
  for (int i = 0; i < 100 && !sent; ++i) {
    auto record = trackers->command(queued.id);
    sent = record && record->status != trackers::CommandStatus::kQueued;
    if (!sent) std::this_thread::sleep_for(10ms);
  }
  auto record = trackers->command(queued.id);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->protocol, "gt06");
  EXPECT_EQ(record->status, trackers::CommandStatus::kSent);
  if (answer.size() == 10) answer += device.receive(2000ms, 5);
  ASSERT_GT(answer.size(), 10u) << "the command bytes must follow the login ACK";
  ASSERT_GE(answer.size(), 14u);
  EXPECT_EQ(trk::toHex(answer.substr(10, 2)), "7878");
  EXPECT_EQ(static_cast<unsigned char>(answer[13]), 0x80) << trk::toHex(answer);
}

TEST(TrackerGatewayTest, CommandThroughTheApiIsSentAndItsAnswerIsReadable) {
  TestServer server([](core::Config& c) { c.trackers.enabled = {"gt06"}; });
  const std::string api = "http://127.0.0.1:" + std::to_string(server.httpPort()) +
                          "/api/v1/devices/864717003283581/commands";
  const std::string auth = server.curlAuth("operator");
  std::string out;
  ASSERT_EQ(runCommand("curl -s -X POST " + auth +
                           " -H 'Content-Type: application/json' -d "
                           "'{\"type\":\"custom\",\"text\":\"DYD,000000#\"}' '" +
                           api + "'",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("\"queued\""), std::string::npos) << out;

  Device device(server.server().trackerPorts().at("gt06"));
  device.sendHex("78780D01086471700328358100093F040D0A");
  std::string got = device.receive(2000ms, 11);
  for (int i = 0; i < 20 && got.find("DYD,000000#") == std::string::npos; ++i) {
    got += device.receive(100ms);
  }
  EXPECT_NE(got.find("DYD,000000#"), std::string::npos) << trk::toHex(got);

  // The device's answer (a 0x15 string packet from the reference corpus): "DYD=Success!".
  device.sendHex(
      "7878661500000000004459443d53756363657373210000000000000000000000000000000000000000000000"
      "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
      "000000000000000000000000010009e82b0d0a");
  for (int i = 0; i < 200; ++i) {
    out.clear();
    runCommand("curl -s " + auth + " '" + api + "'", &out);
    if (out.find("\"answered\"") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  auto list = boost::json::parse(out).as_object().at("commands").as_array();
  ASSERT_EQ(list.size(), 1u) << out;
  const auto& record = list[0].as_object();
  EXPECT_EQ(record.at("status").as_string(), "answered") << out;
  EXPECT_EQ(record.at("type").as_string(), "custom");
  EXPECT_NE(std::string(record.at("answer").as_string()).find("DYD=Success!"), std::string::npos)
      << out;

  // Commands for a device that never connects stay queued; the list filters, sorts and pages.
  const std::string other = "http://127.0.0.1:" + std::to_string(server.httpPort()) +
                            "/api/v1/devices/864717003283599/commands";
  for (const char* body : {R"('{"type":"engineStop"}')", R"('{"type":"custom","text":"X#"}')",
                           R"('{"type":"custom","text":"Y#"}')"}) {
    out.clear();
    ASSERT_EQ(runCommand("curl -s -X POST " + auth + " -H 'Content-Type: application/json' -d " +
                             body + " '" + other + "'",
                         &out),
              0)
        << out;
  }
  // Every page, one command at a time, as "type:text/status".
  const auto seen = [&](const std::string& query) {
    std::vector<std::string> listed;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
      std::string reply;
      runCommand("curl -s " + auth + " '" + other + "?limit=1&" + query +
                     (cursor.empty() ? "" : "&cursor=" + cursor) + "'",
                 &reply);
      const auto body = boost::json::parse(reply).as_object();
      for (const auto& c : body.at("commands").as_array()) {
        const auto* text = c.as_object().if_contains("text");
        listed.push_back(std::string(c.at("type").as_string()) + ":" +
                         (text ? std::string(text->as_string()) : "") + "/" +
                         std::string(c.at("status").as_string()));
      }
      if (body.at("next_cursor").is_null()) return listed;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return listed;
  };
  using Seen = std::vector<std::string>;
  EXPECT_EQ(seen(""), (Seen{"engineStop:/queued", "custom:X#/queued", "custom:Y#/queued"}));
  EXPECT_EQ(seen("sort=-id"), (Seen{"custom:Y#/queued", "custom:X#/queued", "engineStop:/queued"}));
  EXPECT_EQ(seen("type=custom"), (Seen{"custom:X#/queued", "custom:Y#/queued"}));
  EXPECT_TRUE(seen("status=answered").empty());
}

TEST(TrackerGatewayTest, OsmandHttpPositionIsStoredBeforeThe200) {
  TestServer server([](core::Config& c) {
    c.trackers.enabled = {"osmand"};
    c.trackers.ports["osmand"] = 0;
  });
  std::uint16_t port = server.server().trackerPorts().at("osmand");
  std::string out;
  int status = runCommand(
      "curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:" + std::to_string(port) +
          "/?id=phone1&lat=52.5&lon=-13.25&timestamp=1700000000&speed=10'",
      &out);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out, "200");
  EXPECT_EQ(storedCount(server), 1);
  out.clear();
  runCommand("curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:" + std::to_string(port) +
                 "/?lat=1&lon=2'",
             &out);
  EXPECT_EQ(out, "400");
}

}  // namespace
}  // namespace tern::test
