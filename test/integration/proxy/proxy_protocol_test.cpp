// PROXY protocol on the MQTT and tracker listeners, against an in-process server: the header is
// consumed, the bytes after it in the same write reach the protocol, the real client address is
// what the connection logs, and a connection without a valid header is closed.
#include <gtest/gtest.h>
#include <poll.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>

#include "broker/broker.h"
#include "codec/mqtt/codec.h"
#include "codec/trackers/util.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

namespace asio = boost::asio;
namespace mqtt = codec::mqtt;
namespace trk = codec::trackers;
using namespace std::chrono_literals;

const std::string kV1Header = "PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n";
const std::string kGt06Login = "78780D01086471700328358100093F040D0A";
const std::string kGt06LoginAck = "78780501000955940d0a";

// v2, PROXY command, TCP over IPv6: 2001:db8::7 port 40000 → 2001:db8::1 port 1883, plus a TLV.
std::string v2Ipv6Header() {
  std::string header("\r\n\r\n\0\r\nQUIT\n", 12);
  header += "\x21\x21";
  std::string block(32, '\0');
  block[0] = 0x20;
  block[1] = 0x01;
  block[2] = 0x0d;
  block[3] = static_cast<char>(0xb8);
  block[16] = 0x20;
  block[17] = 0x01;
  block[18] = 0x0d;
  block[19] = static_cast<char>(0xb8);
  block[15] = 7;
  block[31] = 1;
  block += std::string("\x9c\x40\x07\x5b", 4);  // ports 40000, 1883
  block += std::string("\x05\x00\x02id", 5);    // PP2_TYPE_UNIQUE_ID
  header.push_back(static_cast<char>(block.size() >> 8));
  header.push_back(static_cast<char>(block.size() & 0xff));
  return header + block;
}

std::string connectBytes(const std::string& clientId) {
  mqtt::Connect connect;
  connect.protocolName = "MQTT";
  connect.protocolLevel = 4;
  connect.clientId = clientId;
  connect.cleanSession = true;
  connect.keepAlive = 60;
  std::string out;
  mqtt::encode(mqtt::Packet{connect}, out);
  return out;
}

bool isConnackAccepted(const std::optional<mqtt::Packet>& packet) {
  if (!packet || !std::holds_alternative<mqtt::Connack>(*packet)) return false;
  return std::get<mqtt::Connack>(*packet).returnCode == mqtt::ConnackCode::kAccepted;
}

// Collects log lines (debug and up) while a test runs, to check which address was logged.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(2000)) {
    spdlog::default_logger()->sinks().push_back(sink_);
    previous_ = spdlog::default_logger()->level();
    spdlog::default_logger()->set_level(spdlog::level::debug);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    spdlog::default_logger()->set_level(previous_);
  }
  bool contains(const std::string& text, std::chrono::milliseconds timeout = 2000ms) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      for (const auto& line : sink_->last_formatted()) {
        if (line.find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  spdlog::level::level_enum previous_ = spdlog::level::info;
};

// A raw TCP "device": writes bytes, reads what the server answers.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& bytes) {
    boost::system::error_code ec;
    asio::write(socket_, asio::buffer(bytes), ec);
  }
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
  bool closed() const { return closed_; }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  bool closed_ = false;
};

TEST(ProxyProtocolTest, MqttV1HeaderAndConnectInOneWrite) {
  LogCapture logs;
  TestServer server([](core::Config& c) { c.mqtt.proxyProtocol = true; });
  MqttTestClient client;
  ASSERT_TRUE(client.open(server.mqttPort()));
  client.sendRaw(kV1Header + connectBytes("behind-haproxy"));
  EXPECT_TRUE(isConnackAccepted(client.receiveType(mqtt::PacketType::kConnack)));
  // The connection carries on normally.
  ASSERT_EQ(client.subscribe("t/x", 1), 1);
  EXPECT_TRUE(client.publish("t/x", "hello", 1));
  auto received = client.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "hello");
  // The client's real address, not the proxy's, is what the connection logs.
  EXPECT_TRUE(logs.contains("client 'behind-haproxy' connected from 192.0.2.10:51234"));
  client.disconnect();
}

TEST(ProxyProtocolTest, MqttV1HeaderConnectAndPublishInOneWrite) {
  TestServer server([](core::Config& c) { c.mqtt.proxyProtocol = true; });
  // UNKNOWN: the proxy could not tell (the socket's own peer is used).
  MqttTestClient subscriber;
  ASSERT_TRUE(subscriber.open(server.mqttPort()));
  subscriber.sendRaw("PROXY UNKNOWN\r\n" + connectBytes("sub"));
  ASSERT_TRUE(isConnackAccepted(subscriber.receiveType(mqtt::PacketType::kConnack)));
  ASSERT_EQ(subscriber.subscribe("t/y", 0), 0);

  // Header, CONNECT and a PUBLISH in a single segment: nothing after the header is lost.
  MqttTestClient publisher;
  ASSERT_TRUE(publisher.open(server.mqttPort()));
  mqtt::Publish publish;
  publish.topic = "t/y";
  publish.payload = "all in one write";
  std::string publishBytes;
  mqtt::encode(mqtt::Packet{publish}, publishBytes);
  publisher.sendRaw(kV1Header + connectBytes("pub") + publishBytes);
  EXPECT_TRUE(isConnackAccepted(publisher.receiveType(mqtt::PacketType::kConnack)));
  auto received = subscriber.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "all in one write");
}

TEST(ProxyProtocolTest, MqttV2Header) {
  LogCapture logs;
  TestServer server([](core::Config& c) { c.mqtt.proxyProtocol = true; });
  MqttTestClient client;
  ASSERT_TRUE(client.open(server.mqttPort()));
  client.sendRaw(v2Ipv6Header() + connectBytes("v2-client"));
  EXPECT_TRUE(isConnackAccepted(client.receiveType(mqtt::PacketType::kConnack)));
  EXPECT_TRUE(logs.contains("client 'v2-client' connected from [2001:db8::7]:40000"));

  // The header and the CONNECT in separate writes work too.
  MqttTestClient split;
  ASSERT_TRUE(split.open(server.mqttPort()));
  const std::string header = v2Ipv6Header();
  split.sendRaw(header.substr(0, 10));
  std::this_thread::sleep_for(50ms);
  split.sendRaw(header.substr(10));
  std::this_thread::sleep_for(50ms);
  split.sendRaw(connectBytes("v2-split"));
  EXPECT_TRUE(isConnackAccepted(split.receiveType(mqtt::PacketType::kConnack)));
}

TEST(ProxyProtocolTest, MqttWithoutHeaderIsClosed) {
  LogCapture logs;
  TestServer server([](core::Config& c) { c.mqtt.proxyProtocol = true; });
  MqttTestClient client;
  EXPECT_FALSE(client.connect(server.mqttPort(), "no-header"));
  EXPECT_TRUE(client.waitClosed());
  EXPECT_TRUE(logs.contains("mqtt: closing connection from 127.0.0.1:"));
  EXPECT_TRUE(logs.contains("invalid PROXY header"));
  // A malformed header is closed the same way.
  MqttTestClient bad;
  ASSERT_TRUE(bad.open(server.mqttPort()));
  bad.sendRaw("PROXY TCP4 192.0.2.10 198.51.100.1 51234\r\n" + connectBytes("bad"));
  EXPECT_FALSE(bad.receiveType(mqtt::PacketType::kConnack, 1000ms));
  EXPECT_TRUE(bad.waitClosed());
  EXPECT_EQ(server.server().broker().stats().connectionsTotal, 0u);
}

TEST(ProxyProtocolTest, MqttHeaderWithTheOptionOffIsAProtocolViolation) {
  TestServer server;
  // v1: "P" reads as a PUBREC header whose length byte is "R" (82): the bytes that follow are
  // taken as its body, so no CONNACK comes, and once the bogus packet is complete the
  // connection is closed as malformed (otherwise the 10 s CONNECT timeout would close it).
  MqttTestClient client;
  ASSERT_TRUE(client.open(server.mqttPort()));
  client.sendRaw(kV1Header + connectBytes("plain"));
  EXPECT_FALSE(client.receiveType(mqtt::PacketType::kConnack, 500ms));
  EXPECT_FALSE(client.closed());
  client.sendRaw(std::string(32, '\0'));
  EXPECT_TRUE(client.waitClosed());
  // v2: the signature's first byte is a reserved packet type: closed at once.
  MqttTestClient v2Client;
  ASSERT_TRUE(v2Client.open(server.mqttPort()));
  v2Client.sendRaw(v2Ipv6Header() + connectBytes("plain-v2"));
  EXPECT_FALSE(v2Client.receiveType(mqtt::PacketType::kConnack, 1000ms));
  EXPECT_TRUE(v2Client.waitClosed());
  EXPECT_EQ(server.server().broker().stats().clientsConnected, 0u);
  EXPECT_GE(server.server().broker().stats().protocolErrors, 2u);
}

TEST(ProxyProtocolTest, TrackerV1HeaderAndLoginInOneWrite) {
  LogCapture logs;
  TestServer server([](core::Config& c) {
    c.trackers.enabled = {"gt06"};
    c.trackers.ports["gt06"] = 0;
    c.trackers.proxyProtocol = true;
  });
  RawClient device(server.server().trackerPorts().at("gt06"));
  device.send(kV1Header + *trk::fromHex(kGt06Login));
  EXPECT_EQ(trk::toHex(device.receive(3000ms, 10)), kGt06LoginAck);
  EXPECT_TRUE(logs.contains("trackers: gt06 device "));
  EXPECT_TRUE(logs.contains("connected from 192.0.2.10:51234"));
}

TEST(ProxyProtocolTest, TrackerWithoutHeaderIsClosed) {
  TestServer server([](core::Config& c) {
    c.trackers.enabled = {"gt06"};
    c.trackers.ports["gt06"] = 0;
    c.trackers.proxyProtocol = true;
  });
  RawClient device(server.server().trackerPorts().at("gt06"));
  device.send(*trk::fromHex(kGt06Login));
  EXPECT_EQ(device.receive(3000ms), "");
  EXPECT_TRUE(device.closed());
}

TEST(ProxyProtocolTest, OsmandV2LocalHeaderAndRequestInOneWrite) {
  TestServer server([](core::Config& c) {
    c.trackers.enabled = {"osmand"};
    c.trackers.ports["osmand"] = 0;
    c.trackers.proxyProtocol = true;
  });
  RawClient phone(server.server().trackerPorts().at("osmand"));
  std::string local("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
  phone.send(local +
             "GET /?id=phone1&lat=52.5&lon=-13.25&timestamp=1700000000 HTTP/1.1\r\n"
             "Host: tern\r\nConnection: close\r\n\r\n");
  std::string response = phone.receive(3000ms);
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  EXPECT_EQ(*server.server().store().countMessages(), 1);
}

}  // namespace
}  // namespace tern::test
