// MQTT 5.0 in the broker, over real sockets against an in-process server: CONNACK properties,
// reason codes, session expiry, server DISCONNECTs, message expiry, topic aliases, flow control,
// packet size limits, property pass-through, subscription options and identifiers, will delay,
// shared subscriptions, and 3.1.1 / 5.0 clients on the same topics.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "broker/broker.h"
#include "codec/mqtt/codec.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

namespace mqtt = codec::mqtt;
using namespace std::chrono_literals;

class Mqtt5Test : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<TestServer>(); }
  std::uint16_t port() const { return server_->mqttPort(); }
  std::unique_ptr<TestServer> server_;
};

mqtt::Subscribe subscription(const std::string& filter, std::uint8_t qos) {
  return mqtt::Subscribe{.subscriptions = {{.filter = filter, .qos = qos}}};
}

mqtt::Publish message(const std::string& topic, const std::string& payload, std::uint8_t qos = 0,
                      bool retain = false) {
  return mqtt::Publish{.topic = topic, .payload = payload, .qos = qos, .retain = retain};
}

// Waits for the next DISCONNECT from the server and returns its reason code.
std::optional<std::uint8_t> disconnectReason(MqttTestClient& client) {
  auto packet = client.receiveType(mqtt::PacketType::kDisconnect);
  if (!packet) return std::nullopt;
  return std::get<mqtt::Disconnect>(*packet).reasonCode;
}

TEST_F(Mqtt5Test, ConnackAnnouncesTheServersLimitsAndFeatures) {
  MqttTestClient client;
  auto connack = client.connect5(port(), "c5");
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnackCode::kAccepted);
  EXPECT_FALSE(connack->sessionPresent);
  const mqtt::Properties& p = connack->properties;
  EXPECT_EQ(p.receiveMaximum, 65535);
  EXPECT_EQ(p.maximumPacketSize, 1024u * 1024u);
  EXPECT_EQ(p.topicAliasMaximum, 10);
  EXPECT_EQ(p.retainAvailable, 1);
  EXPECT_EQ(p.wildcardSubscriptionAvailable, 1);
  EXPECT_EQ(p.subscriptionIdentifierAvailable, 1);
  EXPECT_EQ(p.sharedSubscriptionAvailable, 1);
  EXPECT_FALSE(p.assignedClientIdentifier);
  EXPECT_FALSE(p.serverKeepAlive);
}

TEST_F(Mqtt5Test, EmptyClientIdGetsAnAssignedIdentifier) {
  MqttTestClient client;
  auto connack = client.connect5(port(), "", {}, /*cleanStart=*/false);
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnackCode::kAccepted);
  ASSERT_TRUE(connack->properties.assignedClientIdentifier);
  EXPECT_FALSE(connack->properties.assignedClientIdentifier->empty());
}

TEST(Mqtt5ConfigTest, ServerKeepAliveIsImposedWhenConfigured) {
  TestServer server([](core::Config& c) {
    c.mqtt.serverKeepAlive = 1;
    c.mqtt.receiveMaximum = 20;
    c.mqtt.topicAliasMaximum = 0;
  });
  MqttTestClient client;
  auto connack = client.connect5(server.mqttPort(), "ka", {}, true, /*keepAlive=*/600);
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->properties.serverKeepAlive, 1);
  EXPECT_EQ(connack->properties.receiveMaximum, 20);
  EXPECT_EQ(connack->properties.topicAliasMaximum, 0);
  // The server's keep alive (1 s) applies, not the client's 600 s: silence ends the connection
  // with DISCONNECT 0x8D.
  EXPECT_EQ(disconnectReason(client), mqtt::reason::kKeepAliveTimeout);
  EXPECT_TRUE(client.waitClosed());
}

TEST_F(Mqtt5Test, UnsupportedAuthenticationMethodGetsConnack8C) {
  MqttTestClient client;
  mqtt::Properties props;
  props.authenticationMethod = "SCRAM-SHA-256";
  auto connack = client.connect5(port(), "auth", props);
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnackCode::kBadAuthenticationMethod);
  EXPECT_TRUE(client.waitClosed());
}

TEST_F(Mqtt5Test, TakeoverSendsDisconnect8EToTheOldConnection) {
  MqttTestClient first;
  ASSERT_TRUE(first.connect5(port(), "same"));
  MqttTestClient second;
  ASSERT_TRUE(second.connect5(port(), "same"));
  EXPECT_EQ(disconnectReason(first), mqtt::reason::kSessionTakenOver);
  EXPECT_TRUE(first.waitClosed());
}

TEST_F(Mqtt5Test, ProtocolErrorsGetADisconnectWithTheReason) {
  {
    MqttTestClient client;
    ASSERT_TRUE(client.connect5(port(), "alias"));
    mqtt::Publish p = message("t", "x");
    p.properties.topicAlias = 11;  // above the maximum of 10
    client.send(p);
    EXPECT_EQ(disconnectReason(client), mqtt::reason::kTopicAliasInvalid);
    EXPECT_TRUE(client.waitClosed());
  }
  {
    MqttTestClient client;
    ASSERT_TRUE(client.connect5(port(), "unknown-alias"));
    mqtt::Publish p = message("", "x");
    p.properties.topicAlias = 3;  // never set
    client.send(p);
    EXPECT_EQ(disconnectReason(client), mqtt::reason::kProtocolError);
  }
  {
    MqttTestClient client;
    ASSERT_TRUE(client.connect5(port(), "dup-prop"));
    // A PUBLISH with the content type twice: a protocol error (0x82), seen by the parser.
    const std::string props = std::string(
        "\x03\x00\x01"
        "a\x03\x00\x01"
        "b",
        8);
    std::string body = std::string("\x00\x01t", 3) + static_cast<char>(props.size()) + props;
    client.sendRaw(std::string(1, '\x30') + static_cast<char>(body.size()) + body);
    EXPECT_EQ(disconnectReason(client), mqtt::reason::kProtocolError);
  }
  {
    MqttTestClient client;
    ASSERT_TRUE(client.connect5(port(), "malformed"));
    client.sendRaw(std::string("\x40\x01\x00", 3));  // PUBACK with a 1-byte body
    EXPECT_EQ(disconnectReason(client), mqtt::reason::kMalformedPacket);
  }
  {
    MqttTestClient client;
    ASSERT_TRUE(client.connect5(port(), "auth-packet"));
    client.send(mqtt::Auth{});
    EXPECT_EQ(disconnectReason(client), mqtt::reason::kProtocolError);
  }
}

TEST_F(Mqtt5Test, AcksCarryReasonCodes) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect5(port(), "codes"));
  // Nobody subscribed: PUBACK 0x10 (still a success).
  auto ack = client.publish(message("nobody/here", "x", 1));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->reasonCode, mqtt::reason::kNoMatchingSubscribers);
  auto suback = client.subscribe(mqtt::Subscribe{
      .subscriptions = {{.filter = "a/#", .qos = 2}, {.filter = "$share//bad", .qos = 1}}});
  ASSERT_TRUE(suback);
  EXPECT_EQ(suback->returnCodes, (std::vector<std::uint8_t>{2, mqtt::reason::kTopicFilterInvalid}));
  ack = client.publish(message("a/b", "x", 2));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->reasonCode, mqtt::reason::kSuccess);
  auto received = client.receivePublish();
  ASSERT_TRUE(received);
  client.ack(*received);
  client.send(mqtt::Unsubscribe{.packetId = 77, .filters = {"a/#", "never/subscribed"}});
  auto unsuback = client.receiveType(mqtt::PacketType::kUnsuback);
  ASSERT_TRUE(unsuback);
  EXPECT_EQ(std::get<mqtt::Unsuback>(*unsuback).reasonCodes,
            (std::vector<std::uint8_t>{0x00, mqtt::reason::kNoSubscriptionExisted}));
  // PUBREL for an id we do not know: PUBCOMP 0x92.
  client.send(mqtt::Ack{.type = mqtt::PacketType::kPubrel, .packetId = 999});
  auto pubcomp = client.receiveType(mqtt::PacketType::kPubcomp);
  ASSERT_TRUE(pubcomp);
  EXPECT_EQ(std::get<mqtt::Ack>(*pubcomp).reasonCode, mqtt::reason::kPacketIdentifierNotFound);
}

TEST_F(Mqtt5Test, IngestedPublishIsAcknowledgedAfterCommit) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect5(port(), "sensor5"));
  for (int i = 0; i < 20; ++i) {
    auto ack = client.publish(message("device/v5", "{\"value\":" + std::to_string(i) + "}", 1));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->reasonCode, mqtt::reason::kSuccess);
    auto count = server_->server().store().countMessages();
    ASSERT_TRUE(count.ok());
    EXPECT_EQ(*count, i + 1);
  }
}

TEST_F(Mqtt5Test, SessionExpiryKeepsTheSessionForItsInterval) {
  mqtt::Properties expiry;
  expiry.sessionExpiryInterval = 60;
  {
    MqttTestClient sub;
    ASSERT_TRUE(sub.connect5(port(), "expiring", expiry));
    ASSERT_TRUE(sub.subscribe(subscription("q/#", 1)));
    sub.disconnect();
  }
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  ASSERT_TRUE(pub.publish(message("q/1", "kept", 1)));
  MqttTestClient sub;
  auto connack = sub.connect5(port(), "expiring", expiry, /*cleanStart=*/false);
  ASSERT_TRUE(connack);
  EXPECT_TRUE(connack->sessionPresent);
  auto received = sub.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "kept");
}

TEST_F(Mqtt5Test, SessionEndsAfterItsExpiryInterval) {
  mqtt::Properties expiry;
  expiry.sessionExpiryInterval = 1;
  {
    MqttTestClient sub;
    ASSERT_TRUE(sub.connect5(port(), "short", expiry));
    ASSERT_TRUE(sub.subscribe(subscription("s/#", 1)));
    sub.disconnect();
  }
  std::this_thread::sleep_for(2500ms);  // past the 1 s expiry (checked once a second)
  MqttTestClient sub;
  auto connack = sub.connect5(port(), "short", expiry, /*cleanStart=*/false);
  ASSERT_TRUE(connack);
  EXPECT_FALSE(connack->sessionPresent);
  // Expiry zero (the default): the session ends with the connection.
  {
    MqttTestClient zero;
    ASSERT_TRUE(zero.connect5(port(), "zero"));
    zero.disconnect();
  }
  MqttTestClient again;
  auto second = again.connect5(port(), "zero", {}, /*cleanStart=*/false);
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->sessionPresent);
}

TEST_F(Mqtt5Test, DisconnectCannotExtendAZeroExpiry) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect5(port(), "extend"));
  mqtt::Disconnect d;
  d.properties.sessionExpiryInterval = 100;
  client.send(d);
  EXPECT_EQ(disconnectReason(client), mqtt::reason::kProtocolError);
}

TEST_F(Mqtt5Test, ExpiredMessagesAreNotDeliveredAndTheRestIsForwarded) {
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  mqtt::Publish shortLived = message("exp/retained", "gone", 1, true);
  shortLived.properties.messageExpiryInterval = 1;
  ASSERT_TRUE(pub.publish(shortLived));
  mqtt::Publish longLived = message("exp/kept", "here", 1, true);
  longLived.properties.messageExpiryInterval = 100;
  ASSERT_TRUE(pub.publish(longLived));
  std::this_thread::sleep_for(1500ms);
  MqttTestClient sub;
  ASSERT_TRUE(sub.connect5(port(), "sub"));
  ASSERT_TRUE(sub.subscribe(subscription("exp/#", 1)));
  auto received = sub.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "exp/kept");
  ASSERT_TRUE(received->properties.messageExpiryInterval);
  EXPECT_LE(*received->properties.messageExpiryInterval, 99u);  // 1.5 s have passed
  EXPECT_GT(*received->properties.messageExpiryInterval, 0u);
  sub.ack(*received);
  EXPECT_FALSE(sub.receivePublish(300ms)) << "the expired retained message was delivered";
}

TEST_F(Mqtt5Test, ExpiredMessagesQueuedForAnOfflineSessionAreDropped) {
  mqtt::Properties expiry;
  expiry.sessionExpiryInterval = 60;
  {
    MqttTestClient sub;
    ASSERT_TRUE(sub.connect5(port(), "offline", expiry));
    ASSERT_TRUE(sub.subscribe(subscription("off/#", 1)));
    sub.disconnect();
  }
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  mqtt::Publish p = message("off/1", "expires", 1);
  p.properties.messageExpiryInterval = 1;
  ASSERT_TRUE(pub.publish(p));
  ASSERT_TRUE(pub.publish(message("off/2", "stays", 1)));
  std::this_thread::sleep_for(1500ms);
  MqttTestClient sub;
  ASSERT_TRUE(sub.connect5(port(), "offline", expiry, false));
  auto received = sub.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->payload, "stays");
}

TEST_F(Mqtt5Test, TopicAliasesFromTheClientAreResolved) {
  MqttTestClient sub;
  ASSERT_TRUE(sub.connect(port(), "sub311"));
  ASSERT_TRUE(sub.subscribe("alias/#", 0));
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  mqtt::Publish first = message("alias/topic", "1", 1);
  first.properties.topicAlias = 4;
  ASSERT_TRUE(pub.publish(first));
  mqtt::Publish second = message("", "2", 1);
  second.properties.topicAlias = 4;
  ASSERT_TRUE(pub.publish(second));
  for (const char* payload : {"1", "2"}) {
    auto received = sub.receivePublish();
    ASSERT_TRUE(received);
    EXPECT_EQ(received->topic, "alias/topic");
    EXPECT_EQ(received->payload, payload);
  }
}

TEST_F(Mqtt5Test, TopicAliasesTowardsTheClientStayWithinItsMaximum) {
  MqttTestClient sub;
  mqtt::Properties props;
  props.topicAliasMaximum = 1;
  ASSERT_TRUE(sub.connect5(port(), "sub", props));
  ASSERT_TRUE(sub.subscribe(subscription("ta/#", 0)));
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect(port(), "pub311"));
  ASSERT_TRUE(pub.publish("ta/a", "1"));
  ASSERT_TRUE(pub.publish("ta/a", "2"));
  ASSERT_TRUE(pub.publish("ta/b", "3"));  // no alias left: full topic, no alias
  auto p1 = sub.receivePublish();
  auto p2 = sub.receivePublish();
  auto p3 = sub.receivePublish();
  ASSERT_TRUE(p1 && p2 && p3);
  EXPECT_EQ(p1->topic, "ta/a");
  EXPECT_EQ(p1->properties.topicAlias, 1);
  EXPECT_EQ(p2->topic, "");
  EXPECT_EQ(p2->properties.topicAlias, 1);
  EXPECT_EQ(p3->topic, "ta/b");
  EXPECT_FALSE(p3->properties.topicAlias);
}

TEST_F(Mqtt5Test, ReceiveMaximumLimitsMessagesInFlight) {
  MqttTestClient sub;
  mqtt::Properties props;
  props.receiveMaximum = 2;
  ASSERT_TRUE(sub.connect5(port(), "slow", props));
  ASSERT_TRUE(sub.subscribe(subscription("rm/#", 1)));
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pub.publish(message("rm/t", std::to_string(i), 1)));
  auto first = sub.receivePublish();
  auto second = sub.receivePublish();
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(sub.receivePublish(300ms)) << "more than receive maximum in flight";
  sub.ack(*first);
  auto third = sub.receivePublish();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->payload, "2");
}

TEST_F(Mqtt5Test, PacketsAboveTheClientsMaximumAreNotSent) {
  MqttTestClient sub;
  mqtt::Properties props;
  props.maximumPacketSize = 100;
  ASSERT_TRUE(sub.connect5(port(), "small", props));
  ASSERT_TRUE(sub.subscribe(subscription("mp/#", 1)));
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  ASSERT_TRUE(pub.publish(message("mp/big", std::string(200, 'x'), 1)));
  ASSERT_TRUE(pub.publish(message("mp/small", "ok", 1)));
  auto received = sub.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "mp/small");
}

TEST_F(Mqtt5Test, PropertiesArePassedThroughToMqtt5SubscribersOnly) {
  MqttTestClient sub5;
  ASSERT_TRUE(sub5.connect5(port(), "sub5"));
  ASSERT_TRUE(sub5.subscribe(subscription("props/#", 1)));
  MqttTestClient sub3;
  ASSERT_TRUE(sub3.connect(port(), "sub3"));
  ASSERT_TRUE(sub3.subscribe("props/#", 1));
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  mqtt::Publish p = message("props/x", "{\"a\":1}", 1);
  p.properties.payloadFormatIndicator = 1;
  p.properties.contentType = "application/json";
  p.properties.responseTopic = "reply/here";
  p.properties.correlationData = std::string("\x01\x00\x02", 3);
  p.properties.userProperties = {{"k", "v"}, {"k", "w"}};
  ASSERT_TRUE(pub.publish(p));
  auto received = sub5.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->properties.payloadFormatIndicator, 1);
  EXPECT_EQ(received->properties.contentType, "application/json");
  EXPECT_EQ(received->properties.responseTopic, "reply/here");
  EXPECT_EQ(received->properties.correlationData, std::string("\x01\x00\x02", 3));
  EXPECT_EQ(received->properties.userProperties, p.properties.userProperties);
  auto plain = sub3.receivePublish();
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->payload, "{\"a\":1}");
  EXPECT_TRUE(plain->properties.empty());
}

TEST_F(Mqtt5Test, NoLocalAndRetainAsPublished) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect5(port(), "self"));
  ASSERT_TRUE(client.subscribe(
      mqtt::Subscribe{.subscriptions = {{.filter = "nl/#", .qos = 1, .noLocal = true}}}));
  ASSERT_TRUE(client.subscribe(mqtt::Subscribe{
      .subscriptions = {{.filter = "rap/#", .qos = 1, .retainAsPublished = true}}}));
  ASSERT_TRUE(client.publish(message("nl/mine", "x", 1)));
  ASSERT_TRUE(client.publish(message("rap/r", "retained", 1, true)));
  auto received = client.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "rap/r");
  EXPECT_TRUE(received->retain) << "retain as published keeps the flag on a live message";
  client.ack(*received);
  EXPECT_FALSE(client.receivePublish(300ms)) << "no local delivered our own message";
  MqttTestClient other;
  ASSERT_TRUE(other.connect5(port(), "other"));
  ASSERT_TRUE(other.publish(message("nl/theirs", "y", 1)));
  received = client.receivePublish();
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "nl/theirs");
}

TEST_F(Mqtt5Test, RetainHandlingZeroOneTwo) {
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect5(port(), "pub"));
  ASSERT_TRUE(pub.publish(message("rh/t", "r", 1, true)));
  MqttTestClient sub;
  ASSERT_TRUE(sub.connect5(port(), "sub"));
  auto subscribeWith = [&](std::uint8_t handling) {
    return sub.subscribe(mqtt::Subscribe{
        .subscriptions = {{.filter = "rh/#", .qos = 1, .retainHandling = handling}}});
  };
  ASSERT_TRUE(subscribeWith(2));
  EXPECT_FALSE(sub.receivePublish(300ms)) << "retain handling 2 sent a retained message";
  ASSERT_TRUE(sub.subscribe(
      mqtt::Subscribe{.subscriptions = {{.filter = "rh/+", .qos = 1, .retainHandling = 1}}}));
  auto first = sub.receivePublish();  // new subscription: sent
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->retain);
  sub.ack(*first);
  ASSERT_TRUE(sub.subscribe(
      mqtt::Subscribe{.subscriptions = {{.filter = "rh/+", .qos = 1, .retainHandling = 1}}}));
  EXPECT_FALSE(sub.receivePublish(300ms)) << "retain handling 1 resent on an existing one";
  ASSERT_TRUE(subscribeWith(0));
  auto again = sub.receivePublish();  // handling 0: always
  ASSERT_TRUE(again);
  EXPECT_EQ(again->payload, "r");
}

TEST_F(Mqtt5Test, SubscriptionIdentifiersComeWithMatchingMessages) {
  MqttTestClient sub;
  ASSERT_TRUE(sub.connect5(port(), "ids"));
  mqtt::Subscribe a = subscription("id/#", 1);
  a.properties.subscriptionIdentifiers = {5};
  ASSERT_TRUE(sub.subscribe(a));
  mqtt::Subscribe b = subscription("id/x", 1);
  b.properties.subscriptionIdentifiers = {300};
  ASSERT_TRUE(sub.subscribe(b));
  ASSERT_TRUE(sub.subscribe(subscription("id/+", 0)));  // no identifier
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect(port(), "pub311"));
  ASSERT_TRUE(pub.publish("id/x", "both", 1));
  ASSERT_TRUE(pub.publish("id/y", "one", 1));
  auto both = sub.receivePublish();
  ASSERT_TRUE(both);
  std::vector<std::uint32_t> ids = both->properties.subscriptionIdentifiers;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{5, 300}));
  sub.ack(*both);
  auto one = sub.receivePublish();
  ASSERT_TRUE(one);
  EXPECT_EQ(one->properties.subscriptionIdentifiers, (std::vector<std::uint32_t>{5}));
}

mqtt::Connect willConnect(const std::string& id, std::uint32_t delay, std::uint32_t expiry) {
  mqtt::Connect c{.protocolName = "MQTT",
                  .protocolLevel = 5,
                  .cleanSession = false,
                  .keepAlive = 60,
                  .clientId = id};
  c.will = mqtt::Will{.topic = "wills/" + id, .payload = "gone", .qos = 1};
  c.will->properties.willDelayInterval = delay;
  c.will->properties.userProperties = {{"why", "test"}};
  c.properties.sessionExpiryInterval = expiry;
  return c;
}

TEST_F(Mqtt5Test, WillDelayHoldsTheWillBackAndAResumeCancelsIt) {
  MqttTestClient watcher;
  ASSERT_TRUE(watcher.connect5(port(), "watcher"));
  ASSERT_TRUE(watcher.subscribe(subscription("wills/#", 1)));
  {
    MqttTestClient dev;
    ASSERT_TRUE(dev.connect(port(), willConnect("delayed", 1, 60)));
    dev.drop();
  }
  EXPECT_FALSE(watcher.receivePublish(300ms)) << "will sent before its delay";
  auto will = watcher.receivePublish(5000ms);
  ASSERT_TRUE(will);
  EXPECT_EQ(will->topic, "wills/delayed");
  EXPECT_EQ(will->properties.userProperties, (std::vector<mqtt::UserProperty>{{"why", "test"}}));
  watcher.ack(*will);

  MqttTestClient dev;
  ASSERT_TRUE(dev.connect(port(), willConnect("resumed", 2, 60)));
  dev.drop();
  MqttTestClient back;
  ASSERT_TRUE(back.connect(port(), willConnect("resumed", 2, 60)));
  EXPECT_FALSE(watcher.receivePublish(3500ms)) << "will sent although the session resumed";
}

TEST_F(Mqtt5Test, DisconnectWithWillMessageSendsTheWill) {
  MqttTestClient watcher;
  ASSERT_TRUE(watcher.connect(port(), "watcher311"));
  ASSERT_TRUE(watcher.subscribe("wills/#", 1));
  MqttTestClient dev;
  ASSERT_TRUE(dev.connect(port(), willConnect("polite", 0, 0)));
  dev.send(mqtt::Disconnect{.reasonCode = mqtt::reason::kDisconnectWithWill});
  auto will = watcher.receivePublish();
  ASSERT_TRUE(will);
  EXPECT_EQ(will->topic, "wills/polite");
  MqttTestClient quiet;
  ASSERT_TRUE(quiet.connect(port(), willConnect("quiet", 0, 0)));
  quiet.disconnect();  // reason 0: the will is discarded
  EXPECT_FALSE(watcher.receivePublish(300ms));
}

TEST_F(Mqtt5Test, SharedSubscriptionSpreadsMessagesOverMembers) {
  MqttTestClient a;
  ASSERT_TRUE(a.connect5(port(), "member-a"));
  ASSERT_TRUE(a.subscribe(subscription("$share/workers/jobs/#", 1)));
  MqttTestClient b;  // a 3.1.1 member of the same group
  ASSERT_TRUE(b.connect(port(), "member-b"));
  ASSERT_EQ(b.subscribe("$share/workers/jobs/#", 1), 1);
  MqttTestClient pub;
  ASSERT_TRUE(pub.connect(port(), "producer"));
  constexpr int kCount = 10;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(pub.publish("jobs/" + std::to_string(i), "j", 1));
  std::map<std::string, int> got;
  for (auto* client : {&a, &b}) {
    while (auto p = client->receivePublish(500ms)) {
      ++got[p->topic];
      client->ack(*p);
    }
  }
  EXPECT_EQ(got.size(), static_cast<std::size_t>(kCount)) << "every message reached one member";
  for (const auto& [topic, n] : got) EXPECT_EQ(n, 1) << topic;
  // Retained messages are not sent to shared subscriptions.
  ASSERT_TRUE(pub.publish("jobs/retained", "r", 1, true));
  int retainedCopies = 0;
  for (auto* client : {&a, &b}) {
    while (auto p = client->receivePublish(300ms)) {
      ++retainedCopies;
      client->ack(*p);
    }
  }
  EXPECT_EQ(retainedCopies, 1);  // the live one
  MqttTestClient late;
  ASSERT_TRUE(late.connect(port(), "late"));
  ASSERT_EQ(late.subscribe("$share/workers/jobs/#", 1), 1);
  EXPECT_FALSE(late.receivePublish(300ms));
}

TEST_F(Mqtt5Test, ThreeOneOneAndFiveInteroperate) {
  MqttTestClient v3;
  ASSERT_TRUE(v3.connect(port(), "v3"));
  ASSERT_TRUE(v3.subscribe("mix/#", 2));
  MqttTestClient v5;
  ASSERT_TRUE(v5.connect5(port(), "v5"));
  ASSERT_TRUE(v5.subscribe(subscription("mix/#", 2)));
  ASSERT_TRUE(v3.publish("mix/from3", "three", 2, true));
  mqtt::Publish p = message("mix/from5", "five", 2, true);
  p.properties.userProperties = {{"a", "b"}};
  ASSERT_TRUE(v5.publish(p));
  std::map<std::string, std::string> at3;
  std::map<std::string, std::string> at5;
  for (int i = 0; i < 2; ++i) {
    auto m3 = v3.receivePublish();
    ASSERT_TRUE(m3);
    EXPECT_EQ(m3->qos, 2);
    at3[m3->topic] = m3->payload;
    v3.ack(*m3);
    auto m5 = v5.receivePublish();
    ASSERT_TRUE(m5);
    EXPECT_EQ(m5->qos, 2);
    at5[m5->topic] = m5->payload;
    v5.ack(*m5);
  }
  const std::map<std::string, std::string> expected{{"mix/from3", "three"}, {"mix/from5", "five"}};
  EXPECT_EQ(at3, expected);
  EXPECT_EQ(at5, expected);
  // Retained messages from either version reach late subscribers of either version.
  MqttTestClient late3;
  ASSERT_TRUE(late3.connect(port(), "late3"));
  ASSERT_TRUE(late3.subscribe("mix/#", 1));
  MqttTestClient late5;
  ASSERT_TRUE(late5.connect5(port(), "late5"));
  ASSERT_TRUE(late5.subscribe(subscription("mix/#", 1)));
  for (auto* client : {&late3, &late5}) {
    std::map<std::string, std::string> got;
    for (int i = 0; i < 2; ++i) {
      auto m = client->receivePublish();
      ASSERT_TRUE(m);
      EXPECT_TRUE(m->retain);
      EXPECT_EQ(m->qos, 1);
      got[m->topic] = m->payload;
      client->ack(*m);
    }
    EXPECT_EQ(got, expected);
  }
}

}  // namespace
}  // namespace tern::test
