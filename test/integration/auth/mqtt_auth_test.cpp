// MQTT device authentication against an in-process server: credentials made the way `tern
// device` makes them (a second connection to the same database), clients from Debian's
// mosquitto and the codec-based test client; reason codes, topic rules, what gets stored,
// revocation of live connections and the anonymous policy.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "app/server.h"
#include "auth/auth_service.h"
#include "auth/device_credentials.h"
#include "broker/broker.h"
#include "storage/auth_store.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;
namespace mqtt = codec::mqtt;

constexpr const char* kPassword = "dev-password-1";

bool waitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

std::size_t storedFor(app::Server& server, const std::string& device) {
  storage::MessageQuery query;
  query.deviceId = device;
  query.limit = 1000;
  auto records = server.store().queryMessages(query);
  return records.ok() ? records->size() : 0;
}

mqtt::Connect connectPacket(const std::string& clientId, std::optional<std::string> user,
                            std::optional<std::string> password, std::uint8_t level = 4) {
  mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = level;
  c.clientId = clientId;
  c.username = std::move(user);
  c.password = std::move(password);
  c.keepAlive = 60;
  return c;
}

class MqttAuthTest : public ::testing::Test {
 protected:
  void start(std::function<void(core::Config&)> adjust = {}) {
    server_ = std::make_unique<TestServer>([&](core::Config& c) {
      c.mqtt.allowAnonymous = false;
      c.mqtt.loginMaxFailures = 0;
      c.mqtt.credentialCheckUs = 200'000;
      if (adjust) adjust(c);
    });
    // What `tern device` does: its own connection to the database.
    cli_ = app::openAuthStore(server_->server().config());
    devices_ = std::make_unique<auth::DeviceCredentials>(*cli_);
  }
  void TearDown() override {
    devices_.reset();
    cli_.reset();
    server_.reset();
  }
  std::uint16_t port() const { return server_->mqttPort(); }
  int mosquitto(const std::string& tool, const std::string& args,
                std::string* output = nullptr) const {
    return runCommand(
        "timeout 20 " + tool + " -h 127.0.0.1 -p " + std::to_string(port()) + " " + args + " 2>&1",
        output);
  }
  std::optional<mqtt::Connack> connack(const mqtt::Connect& connect) {
    MqttTestClient client;
    return client.connect(port(), connect);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<storage::AuthStore> cli_;
  std::unique_ptr<auth::DeviceCredentials> devices_;
};

TEST_F(MqttAuthTest, ConnackCodesFor311And5) {
  start();
  ASSERT_TRUE(devices_->addDevice("dev-1", kPassword).ok());
  ASSERT_TRUE(
      server_->server().auth().addUser("viewer-1", auth::Role::kViewer, "viewer-password").ok());
  auto code = [&](mqtt::Connect c) {
    auto ack = connack(c);
    return ack ? static_cast<int>(ack->returnCode) : -1;
  };
  EXPECT_EQ(code(connectPacket("a", "dev-1", kPassword)), 0);
  EXPECT_EQ(code(connectPacket("b", "dev-1", "wrong")), 4);
  EXPECT_EQ(code(connectPacket("c", "nobody", kPassword)), 4);
  EXPECT_EQ(code(connectPacket("d", std::nullopt, std::nullopt)), 5);
  EXPECT_EQ(code(connectPacket("e", "viewer-1", "viewer-password")), 5);
  EXPECT_EQ(code(connectPacket("f", "dev-1", kPassword, 5)), 0);
  EXPECT_EQ(code(connectPacket("g", "dev-1", "wrong", 5)), 0x86);
  EXPECT_EQ(code(connectPacket("h", std::nullopt, std::nullopt, 5)), 0x87);
  EXPECT_EQ(code(connectPacket("i", "viewer-1", "viewer-password", 5)), 0x87);

  std::string output;
  EXPECT_NE(mosquitto("mosquitto_pub", "-u dev-1 -P wrong -t device/dev-1 -m x", &output), 0)
      << output;
  EXPECT_NE(mosquitto("mosquitto_pub", "-t device/dev-1 -m x", &output), 0) << output;
  EXPECT_EQ(
      mosquitto("mosquitto_pub",
                std::string("-q 1 -u dev-1 -P ") + kPassword + " -t device/dev-1 -m '{}'", &output),
      0)
      << output;
  EXPECT_TRUE(waitFor([&] { return storedFor(server_->server(), "dev-1") == 1; }));
}

TEST_F(MqttAuthTest, DevicesStayInTheirTopics) {
  start();
  ASSERT_TRUE(devices_->addDevice("dev-1", kPassword).ok());
  MqttTestClient v5;
  auto ack = v5.connect(port(), connectPacket("dev-1-v5", "dev-1", kPassword, 5));
  ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);

  // MQTT 5: refused publishes get 0x87 at QoS 1 and 2, and are neither routed nor stored.
  for (std::uint8_t qos : {std::uint8_t{1}, std::uint8_t{2}}) {
    mqtt::Publish p;
    p.topic = "device/dev-2";
    p.payload = R"({"v":1})";
    p.qos = qos;
    auto reply = v5.publish(p);
    ASSERT_TRUE(reply) << "QoS " << int{qos};
    EXPECT_EQ(reply->reasonCode, mqtt::reason::kNotAuthorized) << "QoS " << int{qos};
  }
  mqtt::Publish own;
  own.topic = "device/dev-1";
  own.payload = R"({"v":2})";
  own.qos = 1;
  auto reply = v5.publish(own);
  ASSERT_TRUE(reply);
  EXPECT_LT(reply->reasonCode, 0x80);

  mqtt::Subscribe s;
  s.subscriptions = {{.filter = "device/dev-1/#", .qos = 1},
                     {.filter = "device/#", .qos = 1},
                     {.filter = "$share/g/device/dev-1", .qos = 0},
                     {.filter = "#", .qos = 0}};
  auto suback = v5.subscribe(s);
  ASSERT_TRUE(suback);
  EXPECT_EQ(suback->returnCodes, (std::vector<std::uint8_t>{1, 0x87, 0, 0x87}));

  // 3.1.1: SUBACK 0x80; a refused QoS 1/2 publish is acknowledged as usual (no way to say no)
  // and dropped.
  MqttTestClient v3;
  ack = v3.connect(port(), connectPacket("dev-1-v3", "dev-1", kPassword));
  ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);
  EXPECT_EQ(v3.subscribe("device/+", 1), std::optional<std::uint8_t>(0x80));
  EXPECT_EQ(v3.subscribe("device/dev-1", 1), std::optional<std::uint8_t>(1));
  EXPECT_TRUE(v3.publish("device/dev-3", R"({"v":3})", 1));
  EXPECT_TRUE(v3.publish("device/dev-3", R"({"v":4})", 2));
  EXPECT_EQ(mosquitto("mosquitto_pub", std::string("-q 1 -u dev-1 -P ") + kPassword +
                                           " -t device/dev-3 -m '{\"v\":5}'"),
            0);
  EXPECT_TRUE(v3.publish("device/dev-1", R"({"v":6})", 1));
  // The own publishes go through; the others are counted as denied and never stored.
  ASSERT_TRUE(waitFor([&] { return storedFor(server_->server(), "dev-1") == 2; }));
  EXPECT_EQ(storedFor(server_->server(), "dev-2"), 0u);
  EXPECT_EQ(storedFor(server_->server(), "dev-3"), 0u);
  EXPECT_GE(server_->server().broker().stats().denied, 7u);
  // The v5 subscription to its own topic saw its own 3.1.1 publish only.
  auto delivered = v5.receivePublish(10s);
  ASSERT_TRUE(delivered);
  EXPECT_EQ(delivered->topic, "device/dev-1");
}

TEST_F(MqttAuthTest, TokensServiceUsersAndConfiguredRules) {
  start([](core::Config& c) {
    c.mqtt.acl = {core::MqttAclEntry{"", "device", 1, "broadcast/#"},
                  core::MqttAclEntry{"", "device", 2, "inbox/%c"}};
  });
  auto token = devices_->createToken("dev-t");
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(
      server_->server().auth().addUser("gateway", auth::Role::kService, "gateway-password").ok());
  MqttTestClient gateway;
  auto ack = gateway.connect(port(), connectPacket("gw", "gateway", "gateway-password"));
  ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);
  EXPECT_EQ(gateway.subscribe("#", 1), std::optional<std::uint8_t>(1));

  MqttTestClient device;
  ack = device.connect(port(), connectPacket("tok-client", token->token, std::nullopt));
  ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);
  EXPECT_EQ(device.subscribe("broadcast/#", 0), std::optional<std::uint8_t>(0));
  EXPECT_TRUE(device.publish("inbox/tok-client", "hello", 1));
  EXPECT_TRUE(device.publish("broadcast/all", "not allowed", 1));
  EXPECT_TRUE(device.publish("device/dev-t", R"({"v":1})", 1));
  auto first = gateway.receivePublish(10s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->topic, "inbox/tok-client");
  auto second = gateway.receivePublish(10s);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->topic, "device/dev-t") << "the broadcast publish was dropped";
  gateway.publish("broadcast/all", "from the gateway", 0);
  auto broadcast = device.receivePublish(10s);
  ASSERT_TRUE(broadcast);
  EXPECT_EQ(broadcast->payload, "from the gateway");

  // mosquitto with the token as username and no password.
  std::string output;
  EXPECT_EQ(
      mosquitto("mosquitto_pub", "-q 1 -u " + token->token + " -t device/dev-t -m '{}'", &output),
      0)
      << output;
  EXPECT_TRUE(waitFor([&] { return storedFor(server_->server(), "dev-t") == 2; }));
}

TEST_F(MqttAuthTest, ResumedSessionKeepsOnlyWhatTheNewLoginMayRead) {
  start();
  ASSERT_TRUE(devices_->addDevice("dev-1", kPassword).ok());
  ASSERT_TRUE(devices_->addDevice("dev-2", kPassword).ok());
  ASSERT_TRUE(
      server_->server().auth().addUser("gateway", auth::Role::kService, "gateway-password").ok());
  MqttTestClient publisher;
  ASSERT_EQ(publisher.connect(port(), connectPacket("pub-2", "dev-2", kPassword))->returnCode,
            mqtt::ConnackCode::kAccepted);

  // A service user leaves a session under client id "shared": a subscription to every device,
  // one message sent but not acknowledged, one queued while it is away.
  auto gatewayLogin = connectPacket("shared", "gateway", "gateway-password");
  gatewayLogin.cleanSession = false;
  {
    MqttTestClient gateway;
    ASSERT_EQ(gateway.connect(port(), gatewayLogin)->returnCode, mqtt::ConnackCode::kAccepted);
    ASSERT_EQ(gateway.subscribe("device/#", 1), std::optional<std::uint8_t>(1));
    ASSERT_TRUE(publisher.publish("device/dev-2", R"({"v":1})", 1));
    auto unacknowledged = gateway.receivePublish(10s);
    ASSERT_TRUE(unacknowledged);
    EXPECT_EQ(unacknowledged->topic, "device/dev-2");
    gateway.drop();
  }
  ASSERT_TRUE(publisher.publish("device/dev-2", R"({"v":2})", 1));

  // A device logs in with the same client id: it gets the session, not what it held.
  for (std::uint8_t level : {std::uint8_t{4}, std::uint8_t{5}}) {
    SCOPED_TRACE("protocol level " + std::to_string(level));
    auto deviceLogin = connectPacket("shared", "dev-1", kPassword, level);
    deviceLogin.cleanSession = false;
    if (level == 5) deviceLogin.properties.sessionExpiryInterval = 3600;
    MqttTestClient device;
    auto ack = device.connect(port(), deviceLogin);
    ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);
    EXPECT_TRUE(ack->sessionPresent);
    ASSERT_TRUE(publisher.publish("device/dev-2", R"({"v":3})", 1));
    // Its own topic as a marker: a resent or newly routed device/dev-2 message would come first.
    ASSERT_EQ(device.subscribe("device/dev-1", 1), std::optional<std::uint8_t>(1));
    ASSERT_TRUE(device.publish("device/dev-1", R"({"v":9})", 1));
    auto first = device.receivePublish(10s);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->topic, "device/dev-1");
    device.ack(*first);
    ASSERT_TRUE(device.unsubscribe("device/dev-1"));
    device.disconnect();
  }

  // The service user may resume it and subscribe again: only its own rules decide.
  MqttTestClient gateway;
  auto ack = gateway.connect(port(), gatewayLogin);
  ASSERT_TRUE(ack && ack->returnCode == mqtt::ConnackCode::kAccepted);
  EXPECT_TRUE(ack->sessionPresent);
  ASSERT_EQ(gateway.subscribe("device/#", 1), std::optional<std::uint8_t>(1));
  ASSERT_TRUE(publisher.publish("device/dev-2", R"({"v":4})", 1));
  auto again = gateway.receivePublish(10s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->payload, R"({"v":4})");
}

TEST_F(MqttAuthTest, RemovalAndRevocationCloseLiveConnections) {
  start();
  ASSERT_TRUE(devices_->addDevice("dev-1", kPassword).ok());
  ASSERT_TRUE(devices_->addDevice("dev-2", kPassword).ok());
  auto token = devices_->createToken("dev-t");
  ASSERT_TRUE(token.ok());
  MqttTestClient v3;
  MqttTestClient v5;
  MqttTestClient byToken;
  MqttTestClient other;
  ASSERT_EQ(v3.connect(port(), connectPacket("c-v3", "dev-1", kPassword))->returnCode,
            mqtt::ConnackCode::kAccepted);
  ASSERT_EQ(v5.connect(port(), connectPacket("c-v5", "dev-1", kPassword, 5))->returnCode,
            mqtt::ConnackCode::kAccepted);
  ASSERT_EQ(byToken.connect(port(), connectPacket("c-tok", token->token, "", 5))->returnCode,
            mqtt::ConnackCode::kAccepted);
  ASSERT_EQ(other.connect(port(), connectPacket("c-other", "dev-2", kPassword))->returnCode,
            mqtt::ConnackCode::kAccepted);

  ASSERT_TRUE(*devices_->removeDevice("dev-1"));
  auto disconnect = v5.receiveType(mqtt::PacketType::kDisconnect, 20s);
  ASSERT_TRUE(disconnect);
  EXPECT_EQ(std::get<mqtt::Disconnect>(*disconnect).reasonCode, mqtt::reason::kNotAuthorized);
  EXPECT_TRUE(v3.waitClosed(20s));
  EXPECT_FALSE(byToken.closed());

  ASSERT_EQ(*devices_->revokeTokens("dev-t"), 1);
  EXPECT_TRUE(byToken.waitClosed(20s));
  // The other device stays connected and working.
  EXPECT_TRUE(other.publish("device/dev-2", R"({"v":1})", 1));
  EXPECT_FALSE(other.closed());
  EXPECT_EQ(connack(connectPacket("again", "dev-1", kPassword))->returnCode,
            mqtt::ConnackCode::kBadUsernameOrPassword);
}

TEST_F(MqttAuthTest, RepeatedFailuresAreRateLimited) {
  start([](core::Config& c) { c.mqtt.loginMaxFailures = 3; });
  ASSERT_TRUE(devices_->addDevice("dev-1", kPassword).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(connack(connectPacket("bad", "dev-1", "wrong"))->returnCode,
              mqtt::ConnackCode::kBadUsernameOrPassword);
  }
  EXPECT_EQ(connack(connectPacket("good", "dev-1", kPassword))->returnCode,
            mqtt::ConnackCode::kServerUnavailable);
  EXPECT_EQ(connack(connectPacket("good5", "dev-1", kPassword, 5))->returnCode,
            mqtt::ConnackCode::kConnectionRateExceeded);
}

TEST_F(MqttAuthTest, AnonymousOnlyOnLoopbackUnlessAllowed) {
  // Bound beyond loopback (only loopback traffic is sent): anonymous clients are refused...
  auto anonymous = [&] {
    auto ack = connack(connectPacket("anon", std::nullopt, std::nullopt));
    return ack ? static_cast<int>(ack->returnCode) : -1;
  };
  start([](core::Config& c) {
    c.mqtt.allowAnonymous.reset();
    c.mqtt.listen = {"0.0.0.0", 0};
  });
  EXPECT_EQ(anonymous(), 5);
  TearDown();
  // ...unless mqtt.allow_anonymous = true...
  start([](core::Config& c) {
    c.mqtt.allowAnonymous = true;
    c.mqtt.listen = {"0.0.0.0", 0};
  });
  EXPECT_EQ(anonymous(), 0);
  TearDown();
  // ...and allowed when every listener is on loopback (the test servers' default).
  start([](core::Config& c) { c.mqtt.allowAnonymous.reset(); });
  EXPECT_EQ(anonymous(), 0);
  // A client that gives credentials is checked all the same.
  EXPECT_EQ(connack(connectPacket("x", "dev-1", "wrong"))->returnCode,
            mqtt::ConnackCode::kBadUsernameOrPassword);
}

TEST(ExposedMqttListeners, EveryTransportCounts) {
  core::Config c;
  c.mqtt.listen = {"127.0.0.1", 1883};
  c.http.listen = {"127.0.0.1", 8080};
  EXPECT_TRUE(app::exposedMqttListeners(c).empty());
  c.http.listen = {"0.0.0.0", 8080};
  EXPECT_EQ(app::exposedMqttListeners(c), std::vector<std::string>{"http.listen=0.0.0.0:8080"});
  c.mqtt.websocket = false;  // then the HTTP port carries no MQTT
  EXPECT_TRUE(app::exposedMqttListeners(c).empty());
  c.mqtt.wsListen = core::HostPort{"::1", 8083};
  c.mqtt.wssListen = core::HostPort{"localhost", 8084};
  EXPECT_TRUE(app::exposedMqttListeners(c).empty());
  c.mqtt.tlsCert = "cert.pem";
  c.mqtt.tlsListen = {"10.1.2.3", 8883};
  EXPECT_EQ(app::exposedMqttListeners(c),
            std::vector<std::string>{"mqtt.tls_listen=10.1.2.3:8883"});
  c.mqtt.listen = {"0.0.0.0", 1883};
  EXPECT_EQ(app::exposedMqttListeners(c).size(), 2u);
}

}  // namespace
}  // namespace tern::test
