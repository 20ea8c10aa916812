// MQTT over WebSocket, byte by byte, with Boost.Beast's WebSocket client against an in-process
// server: the upgrade on the HTTP port and on dedicated ws/wss listeners, subprotocols, packets
// spanning frames and frames holding several packets, text frames, and the bridge to TCP
// clients and storage.
#include <gtest/gtest.h>

#include <boost/asio/ssl.hpp>
#include <cstdio>
#include <set>
#include <thread>

#include "broker/broker.h"
#include "codec/mqtt/codec.h"
#include "ingest/pipeline.h"
#include "integration/transport/ws_client.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_pki.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

namespace mqtt = codec::mqtt;
namespace ssl = boost::asio::ssl;
using namespace std::chrono_literals;

std::string encoded(const mqtt::Packet& packet) {
  std::string bytes;
  mqtt::encode(packet, bytes);
  return bytes;
}

mqtt::Connect connectPacket(const std::string& clientId) {
  mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 4;
  c.clientId = clientId;
  c.keepAlive = 60;
  return c;
}

mqtt::Publish publishPacket(const std::string& topic, const std::string& payload, std::uint8_t qos,
                            std::uint16_t packetId = 0) {
  mqtt::Publish p;
  p.topic = topic;
  p.payload = payload;
  p.qos = qos;
  p.packetId = packetId;
  return p;
}

mqtt::Subscribe subscribePacket(const std::string& filter, std::uint8_t qos, std::uint16_t id) {
  mqtt::Subscribe s;
  s.packetId = id;
  s.subscriptions.push_back({filter, qos});
  return s;
}

// Waits (bounded) until the broker has `clientId` connected.
std::optional<broker::Broker::ClientIdentity> waitClient(TestServer& server,
                                                         const std::string& clientId) {
  for (int i = 0; i < 200; ++i) {
    if (auto identity = server.server().broker().clientIdentity(clientId)) return identity;
    std::this_thread::sleep_for(25ms);
  }
  return std::nullopt;
}

std::string httpGet(TestServer& server, const std::string& path) {
  std::string out;
  runCommand("curl -s --max-time 10 " + server.curlAuth("viewer") +
                 " 'http://127.0.0.1:" + std::to_string(server.httpPort()) + path + "'",
             &out);
  return out;
}

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestServer>([](core::Config& c) {
      c.mqtt.wsListen = core::HostPort{"127.0.0.1", 0};
    });
  }
  std::uint16_t httpPort() const { return server_->httpPort(); }
  std::uint16_t wsPort() const { return server_->server().broker().wsPort(); }
  std::unique_ptr<TestServer> server_;
};

TEST_F(WebSocketTest, UpgradeOnTheHttpPortSpeaksMqtt) {
  WsClient client;
  ASSERT_EQ(client.open(httpPort()), 101u);
  EXPECT_EQ(client.protocol(), "mqtt");
  ASSERT_TRUE(client.connectMqtt("ws-http"));
  auto identity = waitClient(*server_, "ws-http");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->transport, "ws");
  // The API on the same port is unaffected.
  EXPECT_NE(httpGet(*server_, "/api/v1/health").find("\"broker\""), std::string::npos);
}

TEST_F(WebSocketTest, DedicatedListenerSpeaksMqtt) {
  WsClient client;
  ASSERT_EQ(client.open(wsPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("ws-dedicated"));
  EXPECT_EQ(waitClient(*server_, "ws-dedicated")->transport, "ws");
}

TEST_F(WebSocketTest, SubprotocolNegotiation) {
  {
    WsClient client;
    ASSERT_EQ(client.open(httpPort(), "/mqtt", "mqttv3.1"), 101u);
    EXPECT_EQ(client.protocol(), "mqttv3.1");
  }
  {
    WsClient client;  // the client's first acceptable choice wins
    ASSERT_EQ(client.open(wsPort(), "/mqtt?x=1", "chat, mqtt, mqttv3.1"), 101u);
    EXPECT_EQ(client.protocol(), "mqtt");
  }
  {
    WsClient client;  // none offered: accepted, none echoed
    ASSERT_EQ(client.open(wsPort(), "/mqtt", ""), 101u);
    EXPECT_EQ(client.protocol(), "");
    EXPECT_TRUE(client.connectMqtt("ws-noproto"));
  }
  {
    WsClient client;  // only others offered
    EXPECT_EQ(client.open(wsPort(), "/mqtt", "chat"), 400u);
  }
  {
    WsClient client;
    EXPECT_EQ(client.open(httpPort(), "/mqtt", "chat"), 400u);
  }
}

TEST_F(WebSocketTest, OtherPathsAreNotUpgraded) {
  WsClient onHttp;  // an upgrade elsewhere on the HTTP port is an ordinary API request (401 here)
  const unsigned status = onHttp.open(httpPort(), "/other");
  EXPECT_NE(status, 101u);
  EXPECT_GE(status, 400u);
  WsClient health;
  EXPECT_EQ(health.open(httpPort(), "/api/v1/health"), 200u);
  WsClient onWs;
  EXPECT_EQ(onWs.open(wsPort(), "/other"), 404u);
}

TEST_F(WebSocketTest, PacketsSpanFramesAndMessages) {
  MqttTestClient subscriber;
  ASSERT_TRUE(subscriber.connect(server_->mqttPort(), "tcp-sub"));
  ASSERT_TRUE(subscriber.subscribe("frag/#", 0));

  WsClient client;
  ASSERT_EQ(client.open(httpPort()), 101u);
  // CONNECT in three frames of one fragmented message.
  const std::string connect = encoded(connectPacket("ws-frag"));
  ASSERT_GT(connect.size(), 6u);
  ASSERT_TRUE(
      client.writeFragments({connect.substr(0, 1), connect.substr(1, 4), connect.substr(5)}));
  auto connack = client.receive();
  ASSERT_TRUE(connack);
  ASSERT_TRUE(std::holds_alternative<mqtt::Connack>(*connack));
  // A PUBLISH cut in the middle of its topic, over two separate messages.
  const std::string publish = encoded(publishPacket("frag/one", std::string(300, 'x'), 0));
  ASSERT_TRUE(client.writeBinary(publish.substr(0, 5)));
  ASSERT_TRUE(client.writeBinary(publish.substr(5)));
  auto received = subscriber.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "frag/one");
  EXPECT_EQ(received->payload, std::string(300, 'x'));
  // The end of one packet and the start of the next in one frame.
  const std::string two =
      encoded(publishPacket("frag/two", "2", 0)) + encoded(publishPacket("frag/three", "3", 0));
  ASSERT_TRUE(client.writeBinary(two.substr(0, 7)));
  ASSERT_TRUE(client.writeFragments({two.substr(7, 10), two.substr(17)}));
  received = subscriber.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "frag/two");
  received = subscriber.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "frag/three");
}

TEST_F(WebSocketTest, SeveralPacketsInOneFrame) {
  WsClient client;
  ASSERT_EQ(client.open(wsPort()), 101u);
  // CONNECT, SUBSCRIBE, a QoS 1 PUBLISH to that subscription and PINGREQ: one message.
  std::string bytes = encoded(connectPacket("ws-multi"));
  bytes += encoded(subscribePacket("device/ws-multi", 1, 1));
  bytes += encoded(publishPacket("device/ws-multi", R"({"v":1})", 1, 2));
  std::string ping;
  mqtt::encodeEmpty(mqtt::PacketType::kPingreq, ping);
  bytes += ping;
  ASSERT_TRUE(client.writeBinary(bytes));
  std::set<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    auto packet = client.receive();
    ASSERT_TRUE(packet) << "after " << i << " packets";
    seen.insert(mqtt::packetTypeName(mqtt::packetType(*packet)));
  }
  EXPECT_EQ(seen, (std::set<std::string>{mqtt::packetTypeName(mqtt::PacketType::kConnack),
                                         mqtt::packetTypeName(mqtt::PacketType::kSuback),
                                         mqtt::packetTypeName(mqtt::PacketType::kPuback),
                                         mqtt::packetTypeName(mqtt::PacketType::kPublish),
                                         mqtt::packetTypeName(mqtt::PacketType::kPingresp)}));
}

TEST_F(WebSocketTest, TextFrameClosesThatConnectionOnly) {
  MqttTestClient bystander;
  ASSERT_TRUE(bystander.connect(server_->mqttPort(), "bystander"));
  WsClient other;
  ASSERT_EQ(other.open(httpPort()), 101u);
  ASSERT_TRUE(other.connectMqtt("ws-other"));

  WsClient client;
  ASSERT_EQ(client.open(httpPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("ws-text"));
  ASSERT_TRUE(client.writeText("hello"));
  auto code = client.waitClose();
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1003);  // unsupported data

  // Others carry on.
  ASSERT_TRUE(bystander.subscribe("after/text", 0));
  ASSERT_TRUE(other.writePacket(publishPacket("after/text", "ok", 0)));
  auto received = bystander.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "ok");
}

TEST_F(WebSocketTest, ClientCloseFrameEndsTheSession) {
  WsClient client;
  ASSERT_EQ(client.open(httpPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("ws-bye"));
  ASSERT_TRUE(waitClient(*server_, "ws-bye"));
  std::string disconnect;
  mqtt::encodeEmpty(mqtt::PacketType::kDisconnect, disconnect);
  ASSERT_TRUE(client.writeBinary(disconnect));
  // The server answers DISCONNECT with a normal WebSocket close.
  auto code = client.waitClose();
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1000);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = !server_->server().broker().clientIdentity("ws-bye");
    if (!gone) std::this_thread::sleep_for(25ms);
  }
  EXPECT_TRUE(gone);
}

TEST_F(WebSocketTest, WebSocketAndTcpClientsShareTopicsAndStorage) {
  MqttTestClient tcp;
  ASSERT_TRUE(tcp.connect(server_->mqttPort(), "tcp-side"));
  ASSERT_TRUE(tcp.subscribe("device/#", 1));
  WsClient ws;
  ASSERT_EQ(ws.open(httpPort()), 101u);
  ASSERT_TRUE(ws.connectMqtt("ws-side"));
  ASSERT_TRUE(ws.writePacket(subscribePacket("device/#", 1, 1)));
  auto suback = ws.receive();
  ASSERT_TRUE(suback && std::holds_alternative<mqtt::Suback>(*suback));

  // WebSocket → stored (PUBACK after commit), API, TCP subscriber.
  ASSERT_TRUE(ws.writePacket(publishPacket("device/ws-dev", R"({"temp":21.5})", 1, 7)));
  bool acked = false;
  bool echoed = false;
  for (int i = 0; i < 4 && !(acked && echoed); ++i) {
    auto packet = ws.receive();
    ASSERT_TRUE(packet);
    if (auto* ack = std::get_if<mqtt::Ack>(&*packet)) {
      EXPECT_EQ(ack->type, mqtt::PacketType::kPuback);
      EXPECT_EQ(ack->packetId, 7);
      acked = true;
    } else if (auto* own = std::get_if<mqtt::Publish>(&*packet)) {
      EXPECT_EQ(own->topic, "device/ws-dev");
      ws.writePacket(mqtt::Ack{mqtt::PacketType::kPuback, own->packetId});
      echoed = true;
    }
  }
  EXPECT_TRUE(acked);
  auto atTcp = tcp.receivePublish(5000ms);
  ASSERT_TRUE(atTcp);
  EXPECT_EQ(atTcp->topic, "device/ws-dev");
  EXPECT_EQ(atTcp->payload, R"({"temp":21.5})");
  tcp.ack(*atTcp);
  EXPECT_NE(httpGet(*server_, "/api/v1/devices/ws-dev/messages").find("21.5"), std::string::npos);

  // TCP → stored, WebSocket subscriber.
  ASSERT_TRUE(tcp.publish("device/tcp-dev", R"({"temp":7})", 1));
  std::optional<mqtt::Publish> atWs;
  for (int i = 0; i < 3 && !atWs; ++i) {
    auto packet = ws.receive();
    ASSERT_TRUE(packet);
    if (auto* publish = std::get_if<mqtt::Publish>(&*packet)) atWs = *publish;
  }
  ASSERT_TRUE(atWs);
  EXPECT_EQ(atWs->topic, "device/tcp-dev");
  EXPECT_EQ(atWs->payload, R"({"temp":7})");
  EXPECT_NE(httpGet(*server_, "/api/v1/devices/tcp-dev/messages").find("\"temp\""),
            std::string::npos);
}

TEST_F(WebSocketTest, BigMessageInSmallFramesThenManyPackets) {
  // A 200 KB payload in 1 KB frames, then 500 small publishes in one message: the connection's
  // reads follow the byte stream whatever the framing.
  MqttTestClient subscriber;
  ASSERT_TRUE(subscriber.connect(server_->mqttPort(), "tcp-big"));
  ASSERT_TRUE(subscriber.subscribe("big/#", 0));
  WsClient client;
  ASSERT_EQ(client.open(httpPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("ws-big"));
  const std::string big = encoded(publishPacket("big/one", std::string(200'000, 'b'), 0));
  std::vector<std::string> parts;
  for (std::size_t at = 0; at < big.size(); at += 1024) parts.push_back(big.substr(at, 1024));
  ASSERT_TRUE(client.writeFragments(parts));
  auto received = subscriber.receivePublish(10000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload.size(), 200'000u);
  std::string many;
  for (int i = 0; i < 500; ++i) many += encoded(publishPacket("big/n", std::to_string(i), 0));
  ASSERT_TRUE(client.writeBinary(many));
  for (int i = 0; i < 500; ++i) {
    received = subscriber.receivePublish(10000ms);
    ASSERT_TRUE(received) << "publish " << i;
    ASSERT_EQ(received->payload, std::to_string(i));
  }
}

TEST_F(WebSocketTest, PlainHttpRequestToDedicatedListenerGets426) {
  std::string out;
  runCommand("curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:" +
                 std::to_string(wsPort()) + "/mqtt",
             &out);
  EXPECT_EQ(out, "426");
}

TEST(WebSocketIngestTest, BackPressureOverWebSocket) {
  // As BrokerIngestTest.BackPressureKeepsTheQueueBounded, through a WebSocket: the connection
  // stops reading the stream while the pipeline is over capacity, and every publish is stored.
  TestServer server([](core::Config& c) { c.ingest.queueCapacity = 100; });
  WsClient client;
  ASSERT_EQ(client.open(server.httpPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("ws-burst"));
  constexpr int kCount = 5000;
  std::string burst;
  for (int i = 0; i < kCount; ++i) {
    mqtt::encodePublish("device/ws-burst", "{\"value\":" + std::to_string(i) + "}", 1, false, false,
                        static_cast<std::uint16_t>(i % 65535 + 1), burst);
  }
  // Several messages of ~16 KB, each holding many packets and cutting some in two.
  std::vector<std::string> messages;
  for (std::size_t at = 0; at < burst.size(); at += 16'000)
    messages.push_back(burst.substr(at, 16'000));
  for (const auto& message : messages) ASSERT_TRUE(client.writeBinary(message));
  for (int i = 0; i < kCount; ++i) {
    auto packet = client.receive(10000ms);
    ASSERT_TRUE(packet) << i;
    ASSERT_TRUE(std::holds_alternative<mqtt::Ack>(*packet));
    ASSERT_EQ(std::get<mqtt::Ack>(*packet).packetId, i % 65535 + 1);
  }
  EXPECT_EQ(*server.server().store().countMessages(), kCount);
  auto stats = server.server().pipeline().stats();
  std::printf("max queue depth %llu, read pauses %llu\n",
              static_cast<unsigned long long>(stats.maxQueueDepth),
              static_cast<unsigned long long>(server.server().broker().stats().readPauses));
  EXPECT_LE(stats.maxQueueDepth, 100u + 64u * 1024u / 30u);
  if (stats.maxQueueDepth >= 100) {
    EXPECT_GT(server.server().broker().stats().readPauses, 0u);
  }
}

TEST(WebSocketProxyTest, ProxyHeaderBeforeTheUpgrade) {
  TestServer server([](core::Config& c) {
    c.mqtt.wsListen = core::HostPort{"127.0.0.1", 0};
    c.mqtt.proxyProtocol = true;
  });
  WsClient client;
  ASSERT_EQ(client.open(server.server().broker().wsPort(), "/mqtt", "mqtt",
                        "PROXY TCP4 203.0.113.7 127.0.0.1 51234 8083\r\n"),
            101u);
  EXPECT_TRUE(client.connectMqtt("ws-proxied"));
  WsClient without;
  EXPECT_EQ(without.open(server.server().broker().wsPort()), 0u);  // no header: closed
}

class WssTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(makeTestPki(pkiDir_.path(), pki_));
    server_ = std::make_unique<TestServer>([this](core::Config& c) {
      c.mqtt.tlsCert = pki_.serverCert.string();
      c.mqtt.tlsKey = pki_.serverKey.string();
      c.mqtt.tlsCa = pki_.caCert.string();
      c.mqtt.tlsListen = core::HostPort{"127.0.0.1", 0};
      c.mqtt.wssListen = core::HostPort{"127.0.0.1", 0};
    });
    context_.set_verify_mode(ssl::verify_peer);
    context_.load_verify_file(pki_.caCert.string());
  }
  std::uint16_t wssPort() const { return server_->server().broker().wssPort(); }
  TempDir pkiDir_;
  TestPki pki_;
  std::unique_ptr<TestServer> server_;
  ssl::context context_{ssl::context::tls_client};
};

TEST_F(WssTest, WebSocketOverTls) {
  WsClient client(&context_);
  ASSERT_EQ(client.open(wssPort()), 101u);
  EXPECT_EQ(client.protocol(), "mqtt");
  ASSERT_TRUE(client.connectMqtt("wss-1"));
  auto identity = waitClient(*server_, "wss-1");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->transport, "wss");
  EXPECT_EQ(identity->certificateCn, "");

  MqttTestClient tcp;
  ASSERT_TRUE(tcp.connect(server_->mqttPort(), "tcp-wss"));
  ASSERT_TRUE(tcp.subscribe("wss/#", 0));
  const std::string publish = encoded(publishPacket("wss/t", "secure", 0));
  ASSERT_TRUE(client.writeFragments({publish.substr(0, 3), publish.substr(3)}));
  auto received = tcp.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "secure");
}

TEST_F(WssTest, ClientCertificateCnOverWss) {
  context_.use_certificate_chain_file(pki_.clientCert.string());
  context_.use_private_key_file(pki_.clientKey.string(), ssl::context::pem);
  WsClient client(&context_);
  ASSERT_EQ(client.open(wssPort()), 101u);
  ASSERT_TRUE(client.connectMqtt("wss-cert"));
  auto identity = waitClient(*server_, "wss-cert");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->certificateCn, TestPki::kClientCn);
  EXPECT_EQ(identity->username, TestPki::kClientCn);
}

TEST_F(WssTest, PlainWebSocketToTheWssPortFailsAlone) {
  WsClient plain;
  EXPECT_EQ(plain.open(wssPort()), 0u);
  WsClient client(&context_);
  ASSERT_EQ(client.open(wssPort()), 101u);
  EXPECT_TRUE(client.connectMqtt("wss-after"));
}

}  // namespace
}  // namespace tern::test
