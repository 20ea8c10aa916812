// Every "MUST" the parser enforces, one hand-built packet per violation.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codec/mqtt/codec.h"
#include "unit/codec/mqtt_test_util.h"

namespace tern::codec::mqtt {
namespace {

using testing::raw;
using testing::str;
using testing::u16;

struct MalformedCase {
  std::string name;
  std::string bytes;
  std::string errorMentions;  // a fragment the error text must contain
};

void PrintTo(const MalformedCase& c, std::ostream* os) {
  *os << c.name;
}

// A CONNECT body from its parts; `flags` and `rest` vary per case.
std::string connectBody(std::uint8_t flags, const std::string& rest,
                        const std::string& name = "MQTT", std::uint8_t level = 4) {
  return str(name) + std::string(1, static_cast<char>(level)) +
         std::string(1, static_cast<char>(flags)) + u16(60) + rest;
}

std::vector<MalformedCase> cases() {
  const std::string nul("\0", 1);
  std::vector<MalformedCase> c = {
      // Framing.
      {"ReservedType0", std::string("\x00\x00", 2), "reserved"},
      {"ReservedType15", std::string("\xF0\x00", 2), "reserved"},
      {"FiveLengthBytes", "\x30\xFF\xFF\xFF\xFF\x01", "longer than 4 bytes"},

      // CONNECT.
      {"ConnectFlags", raw(0x11, connectBody(0x02, str("c"))), "CONNECT fixed header flags"},
      {"ConnectProtocolNameTruncated", raw(0x10, std::string("\x00\x04MQ", 4)),
       "protocol name is truncated"},
      {"ConnectProtocolNameEmptyBody", raw(0x10, ""), "protocol name is truncated"},
      {"ConnectProtocolNameWrong", raw(0x10, connectBody(0x02, str("c"), "MQTX")),
       "neither MQTT nor MQIsdp"},
      {"ConnectProtocolNameBadUtf8", raw(0x10, connectBody(0x02, str("c"), "MQ\xC0\x80")),
       "protocol name is not valid UTF-8"},
      {"ConnectLevelMissing", raw(0x10, str("MQTT")), "protocol level is missing"},
      {"ConnectFlagsMissing", raw(0x10, str("MQTT") + "\x04"), "flags byte is missing"},
      {"ConnectReservedBit", raw(0x10, connectBody(0x03, str("c"))), "reserved flag bit 0"},
      {"ConnectWillQosWithoutWill", raw(0x10, connectBody(0x0A, str("c"))),
       "without the will flag"},
      {"ConnectWillRetainWithoutWill", raw(0x10, connectBody(0x22, str("c"))),
       "without the will flag"},
      {"ConnectWillQos3", raw(0x10, connectBody(0x1E, str("c") + str("w") + str("x"))),
       "will QoS is 3"},
      {"ConnectPasswordWithoutUsername", raw(0x10, connectBody(0x42, str("c") + str("p"))),
       "password flag set without the username flag"},
      {"ConnectKeepAliveTruncated", raw(0x10, str("MQTT") + std::string("\x04\x02\x00", 3)),
       "keep alive is truncated"},
      {"ConnectClientIdMissing", raw(0x10, connectBody(0x02, "")),
       "client identifier is truncated"},
      {"ConnectClientIdTruncated",
       raw(0x10, connectBody(0x02, std::string("\x00\x05"
                                               "ab",
                                               4))),
       "client identifier is truncated"},
      {"ConnectClientIdNul", raw(0x10, connectBody(0x02, str("a" + nul))),
       "client identifier is not valid UTF-8"},
      {"ConnectClientIdSurrogate", raw(0x10, connectBody(0x02, str("\xED\xA0\x80"))),
       "client identifier is not valid UTF-8"},
      {"ConnectWillTopicTruncated", raw(0x10, connectBody(0x06, str("c") + nul)),
       "will topic is truncated"},
      {"ConnectWillTopicWildcard", raw(0x10, connectBody(0x06, str("c") + str("a/#") + str("x"))),
       "will topic is empty or contains a wildcard"},
      {"ConnectWillTopicEmpty", raw(0x10, connectBody(0x06, str("c") + str("") + str("x"))),
       "will topic is empty or contains a wildcard"},
      {"ConnectWillTopicBadUtf8", raw(0x10, connectBody(0x06, str("c") + str("\xFF") + str("x"))),
       "will topic is not valid UTF-8"},
      {"ConnectWillMessageMissing", raw(0x10, connectBody(0x06, str("c") + str("w"))),
       "will message is truncated"},
      {"ConnectUsernameMissing", raw(0x10, connectBody(0x82, str("c"))), "user name is truncated"},
      {"ConnectUsernameBadUtf8", raw(0x10, connectBody(0x82, str("c") + str("\xC3"))),
       "user name is not valid UTF-8"},
      {"ConnectPasswordMissing", raw(0x10, connectBody(0xC2, str("c") + str("u"))),
       "password is truncated"},
      {"ConnectTrailingBytes", raw(0x10, connectBody(0x02, str("c") + "x")), "trailing bytes"},
      {"ConnectTrailingAfterPassword",
       raw(0x10, connectBody(0xC2, str("c") + str("u") + str("p") + nul)), "trailing bytes"},

      // CONNACK.
      {"ConnackFlags", raw(0x21, std::string("\x00\x00", 2)), "CONNACK fixed header flags"},
      {"ConnackShort", raw(0x20, nul), "CONNACK body is not 2 bytes"},
      {"ConnackLong", raw(0x20, std::string("\x00\x00\x00", 3)), "CONNACK body is not 2 bytes"},
      {"ConnackAckFlags", raw(0x20, std::string("\x02\x00", 2)), "acknowledge flags"},
      {"ConnackReservedCode", raw(0x20, std::string("\x00\x06", 2)), "return code is reserved"},
      {"ConnackSessionPresentOnRefusal", raw(0x20, "\x01\x05"), "session present"},

      // PUBLISH.
      {"PublishQos3", raw(0x36, str("t") + u16(1)), "PUBLISH QoS is 3"},
      {"PublishDupQos0", raw(0x38, str("t")), "DUP set with QoS 0"},
      {"PublishNoTopic", raw(0x30, ""), "topic name is truncated"},
      {"PublishTopicTruncated",
       raw(0x30, std::string("\x00\x05"
                             "ab",
                             4)),
       "topic name is truncated"},
      {"PublishTopicEmpty", raw(0x30, str("") + "payload"), "topic name is empty"},
      {"PublishTopicPlus", raw(0x30, str("a/+/b")), "PUBLISH topic name contains a wildcard"},
      {"PublishTopicHash", raw(0x30, str("a/#")), "PUBLISH topic name contains a wildcard"},
      {"PublishTopicNul", raw(0x30, str("a" + nul)), "PUBLISH topic name is not valid UTF-8"},
      {"PublishTopicOverlong", raw(0x30, str("\xC0\xAF")), "PUBLISH topic name is not valid UTF-8"},
      {"PublishTopicAboveMax", raw(0x30, str("\xF4\x90\x80\x80")), "not valid UTF-8"},
      {"PublishQos1NoId", raw(0x32, str("t")), "packet identifier is missing"},
      {"PublishQos1HalfId", raw(0x32, str("t") + nul), "packet identifier is missing"},
      {"PublishQos1IdZero", raw(0x32, str("t") + u16(0)), "PUBLISH packet identifier is 0"},
      {"PublishQos2IdZero", raw(0x34, str("t") + u16(0) + "x"), "PUBLISH packet identifier is 0"},

      // SUBSCRIBE.
      {"SubscribeFlags0", raw(0x80, u16(1) + str("a") + nul), "SUBSCRIBE fixed header flags"},
      {"SubscribeFlags3", raw(0x83, u16(1) + str("a") + nul), "SUBSCRIBE fixed header flags"},
      {"SubscribeNoId", raw(0x82, ""), "SUBSCRIBE packet identifier is missing"},
      {"SubscribeIdZero", raw(0x82, u16(0) + str("a") + nul), "SUBSCRIBE packet identifier is 0"},
      {"SubscribeNoFilters", raw(0x82, u16(1)), "SUBSCRIBE has no topic filter"},
      {"SubscribeFilterTruncated",
       raw(0x82, u16(1) + std::string("\x00\x03"
                                      "a",
                                      3)),
       "SUBSCRIBE topic filter is truncated"},
      {"SubscribeFilterEmpty", raw(0x82, u16(1) + str("") + nul),
       "SUBSCRIBE topic filter is empty"},
      {"SubscribeHashNotLast", raw(0x82, u16(1) + str("#/a") + nul), "misplaced wildcard"},
      {"SubscribeHashInLevel", raw(0x82, u16(1) + str("a/b#") + nul), "misplaced wildcard"},
      {"SubscribePlusInLevel", raw(0x82, u16(1) + str("a+/b") + nul), "misplaced wildcard"},
      {"SubscribeFilterBadUtf8", raw(0x82, u16(1) + str("\xE0\x80\x80") + nul),
       "SUBSCRIBE topic filter is not valid UTF-8"},
      {"SubscribeQosMissing", raw(0x82, u16(1) + str("a")), "requested QoS byte is missing"},
      {"SubscribeQosReservedBits", raw(0x82, u16(1) + str("a") + "\x04"), "reserved bits"},
      {"SubscribeQosHighBit", raw(0x82, u16(1) + str("a") + "\x81"), "reserved bits"},
      {"SubscribeQos3", raw(0x82, u16(1) + str("a") + "\x03"), "requested QoS is 3"},
      {"SubscribeSecondFilterBad", raw(0x82, u16(1) + str("a") + nul + str("b/#/c") + nul),
       "misplaced wildcard"},

      // SUBACK.
      {"SubackFlags", raw(0x92, u16(1) + nul), "SUBACK fixed header flags"},
      {"SubackNoId", raw(0x90, nul), "SUBACK packet identifier is missing"},
      {"SubackIdZero", raw(0x90, u16(0) + nul), "SUBACK packet identifier is 0"},
      {"SubackNoCodes", raw(0x90, u16(1)), "SUBACK has no return codes"},
      {"SubackCode3", raw(0x90, u16(1) + "\x03"), "return code is not 0, 1, 2 or 0x80"},
      {"SubackCode81", raw(0x90, u16(1) + nul + "\x81"), "return code is not 0, 1, 2 or 0x80"},

      // UNSUBSCRIBE.
      {"UnsubscribeFlags0", raw(0xA0, u16(1) + str("a")), "UNSUBSCRIBE fixed header flags"},
      {"UnsubscribeNoId", raw(0xA2, ""), "UNSUBSCRIBE packet identifier is missing"},
      {"UnsubscribeIdZero", raw(0xA2, u16(0) + str("a")), "UNSUBSCRIBE packet identifier is 0"},
      {"UnsubscribeNoFilters", raw(0xA2, u16(1)), "UNSUBSCRIBE has no topic filter"},
      {"UnsubscribeFilterTruncated", raw(0xA2, u16(1) + str("a") + nul),
       "UNSUBSCRIBE topic filter is truncated"},
      {"UnsubscribeFilterEmpty", raw(0xA2, u16(1) + str("")), "UNSUBSCRIBE topic filter is empty"},
      {"UnsubscribeFilterBad", raw(0xA2, u16(1) + str("sport+")), "misplaced wildcard"},
      {"UnsubscribeFilterNul", raw(0xA2, u16(1) + str(nul)), "not valid UTF-8"},

      // PINGREQ, PINGRESP, DISCONNECT.
      {"PingreqFlags", raw(0xC1, ""), "PINGREQ fixed header flags"},
      {"PingreqBody", raw(0xC0, nul), "PINGREQ body is not empty"},
      {"PingrespFlags", raw(0xD8, ""), "PINGRESP fixed header flags"},
      {"PingrespBody", raw(0xD0, "x"), "PINGRESP body is not empty"},
      {"DisconnectFlags", raw(0xE2, ""), "DISCONNECT fixed header flags"},
      {"DisconnectBody", raw(0xE0, nul), "DISCONNECT body is not empty"},
  };

  // The acknowledgements share their rules; PUBREL alone carries flags 0010.
  struct AckType {
    const char* name;
    std::uint8_t header;
    std::uint8_t badHeader;
  };
  for (const AckType& a :
       {AckType{"PUBACK", 0x40, 0x42}, AckType{"PUBREC", 0x50, 0x51}, AckType{"PUBREL", 0x62, 0x60},
        AckType{"PUBCOMP", 0x70, 0x72}, AckType{"UNSUBACK", 0xB0, 0xB2}}) {
    const std::string n = a.name;
    c.push_back({n + "Flags", raw(a.badHeader, u16(1)), n + " fixed header flags"});
    c.push_back({n + "Empty", raw(a.header, ""), n + " body is not 2 bytes"});
    c.push_back({n + "Short", raw(a.header, nul), n + " body is not 2 bytes"});
    c.push_back({n + "Long", raw(a.header, u16(1) + nul), n + " body is not 2 bytes"});
    c.push_back({n + "IdZero", raw(a.header, u16(0)), n + " packet identifier is 0"});
  }
  return c;
}

class MalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTest, IsRejectedWithANamedReason) {
  const MalformedCase& c = GetParam();
  const testing::Decoded d = testing::decodeOne(c.bytes);
  EXPECT_EQ(d.status, DecodeStatus::kMalformed) << decodeStatusName(d.status);
  ASSERT_NE(d.error, nullptr);
  EXPECT_NE(std::string(d.error).find(c.errorMentions), std::string::npos)
      << "error was: " << d.error;
}

TEST_P(MalformedTest, LeavesTheOutputUntouched) {
  const Frame frame = splitFrame(GetParam().bytes, testing::kNoLimit);
  if (frame.status != DecodeStatus::kOk) {  // rejected while framing: nothing to parse
    EXPECT_EQ(frame.status, DecodeStatus::kMalformed);
    return;
  }
  Packet out = Empty{PacketType::kDisconnect};
  EXPECT_EQ(parsePacket(frame.header, frame.body, out).status, DecodeStatus::kMalformed);
  EXPECT_TRUE(out == Packet{Empty{PacketType::kDisconnect}});
}

INSTANTIATE_TEST_SUITE_P(Mqtt, MalformedTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<MalformedCase>& param) {
                           return param.param.name;
                         });

TEST(MqttParse, ReservedTypeNibblesAreMalformed) {
  Packet out;
  for (const std::uint8_t header : std::initializer_list<std::uint8_t>{0x00, 0x0F, 0xF0, 0xFF}) {
    const ParseResult result = parsePacket(header, "", out);
    EXPECT_EQ(result.status, DecodeStatus::kMalformed);
    ASSERT_NE(result.error, nullptr);
    EXPECT_NE(std::string(result.error).find("reserved"), std::string::npos);
  }
}

TEST(MqttParse, ConnectUnknownLevelKeepsOnlyNameAndLevel) {
  // A future level: its layout after the level byte is unknown.
  const std::string bytes =
      raw(0x10, str("MQTT") + "\x06\x02" + u16(60) + std::string(1, '\0') + str("c6"));
  const testing::Decoded d = testing::decodeOne(bytes);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  const auto& connect = std::get<Connect>(d.packet);
  EXPECT_EQ(connect.protocolName, "MQTT");
  EXPECT_EQ(connect.protocolLevel, 6);
  EXPECT_TRUE(connect == (Connect{.protocolName = "MQTT", .protocolLevel = 6}));
}

TEST(MqttParse, ConnectCleanSessionZeroWithEmptyIdIsParsed) {
  // [MQTT-3.1.3-8] is answered with CONNACK 0x02 by the broker, not by closing.
  const testing::Decoded d = testing::decodeOne(raw(0x10, connectBody(0x00, str(""))));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  const auto& connect = std::get<Connect>(d.packet);
  EXPECT_FALSE(connect.cleanSession);
  EXPECT_EQ(connect.clientId, "");
  EXPECT_EQ(connect.keepAlive, 60);
}

TEST(MqttParse, PublishFlagsAreDecoded) {
  const testing::Decoded d = testing::decodeOne(raw(0x3D, str("a/b") + u16(513) + "data"));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  const auto& publish = std::get<Publish>(d.packet);
  EXPECT_EQ(publish.qos, 2);
  EXPECT_TRUE(publish.dup);
  EXPECT_TRUE(publish.retain);
  EXPECT_EQ(publish.packetId, 513);
  EXPECT_EQ(publish.topic, "a/b");
  EXPECT_EQ(publish.payload, "data");
}

TEST(MqttParse, PublishPayloadMayContainAnything) {
  // The payload is opaque: NUL, invalid UTF-8 and wildcards are all fine there.
  const std::string payload("\0\xFF#+\xC0", 5);
  const testing::Decoded d = testing::decodeOne(raw(0x30, str("t") + payload));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_EQ(std::get<Publish>(d.packet).payload, payload);
}

}  // namespace
}  // namespace tern::codec::mqtt
