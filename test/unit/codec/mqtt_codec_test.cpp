// Round trips, incremental framing and size limits for the MQTT 3.1.1 codec.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "codec/mqtt/codec.h"
#include "unit/codec/mqtt_test_util.h"

namespace tern::codec::mqtt {
namespace {

using testing::decodeOne;
using testing::encoded;
using testing::kNoLimit;

struct Sample {
  std::string name;
  Packet packet;
};

void PrintTo(const Sample& sample, std::ostream* os) {
  *os << sample.name;
}

std::string binary(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 31 + 7);
  return out;
}

std::vector<Sample> samples() {
  std::vector<Sample> s;
  s.push_back({"ConnectMinimal", Connect{.protocolName = "MQTT", .clientId = "c1"}});
  s.push_back({"ConnectEmptyClientId", Connect{.protocolName = "MQTT", .keepAlive = 30}});
  s.push_back({"ConnectFull", Connect{.protocolName = "MQTT",
                                      .protocolLevel = 4,
                                      .cleanSession = false,
                                      .keepAlive = 65535,
                                      .clientId = "sensor-\xC3\xA9t\xC3\xA9",
                                      .will = Will{.topic = "devices/sensor/status",
                                                   .payload = std::string("off\0line\xFF", 9),
                                                   .qos = 2,
                                                   .retain = true},
                                      .username = "user",
                                      .password = std::string("p\0\xFFw", 4)}});
  s.push_back({"ConnectWillQos1NoRetain",
               Connect{.protocolName = "MQTT",
                       .clientId = "w",
                       .will = Will{.topic = "t", .payload = "", .qos = 1, .retain = false}}});
  s.push_back(
      {"ConnectUsernameOnly", Connect{.protocolName = "MQTT", .clientId = "u", .username = ""}});
  s.push_back(
      {"ConnectEmptyPassword",
       Connect{.protocolName = "MQTT", .clientId = "p", .username = "name", .password = ""}});
  s.push_back(
      {"ConnectMqtt31", Connect{.protocolName = "MQIsdp", .protocolLevel = 3, .clientId = "old"}});
  // Only the name and level survive for unknown levels (see codec.h).
  s.push_back({"ConnectLevel6", Connect{.protocolName = "MQTT", .protocolLevel = 6}});
  s.push_back({"ConnectLongClientId",
               Connect{.protocolName = "MQTT", .clientId = std::string(65535, 'c')}});

  s.push_back({"ConnackAccepted", Connack{}});
  s.push_back({"ConnackSessionPresent", Connack{.sessionPresent = true}});
  s.push_back({"ConnackNotAuthorized", Connack{.returnCode = ConnackCode::kNotAuthorized}});
  s.push_back(
      {"ConnackBadVersion", Connack{.returnCode = ConnackCode::kUnacceptableProtocolVersion}});

  s.push_back({"PublishQos0EmptyPayload", Publish{.topic = "a/b"}});
  s.push_back(
      {"PublishQos1MaxId", Publish{.topic = "a", .payload = "x", .qos = 1, .packetId = 65535}});
  s.push_back({"PublishQos2DupRetainBinary", Publish{.topic = "bin/\xE2\x82\xAC",
                                                     .payload = binary(1000),
                                                     .qos = 2,
                                                     .retain = true,
                                                     .dup = true,
                                                     .packetId = 1}});
  s.push_back({"PublishQos1Dup", Publish{.topic = "t", .qos = 1, .dup = true, .packetId = 7}});
  s.push_back({"PublishRetainQos0", Publish{.topic = "r", .payload = "v", .retain = true}});
  s.push_back({"PublishMaxTopic", Publish{.topic = std::string(65535, 't'), .payload = "p"}});
  s.push_back({"PublishEmptyLevels", Publish{.topic = "/a//b/", .payload = "e"}});
  s.push_back({"PublishSys", Publish{.topic = "$SYS/broker/uptime", .payload = "1"}});
  s.push_back({"PublishNulPayload", Publish{.topic = "z", .payload = std::string(5, '\0')}});

  for (const PacketType type :
       {PacketType::kPuback, PacketType::kPubrec, PacketType::kPubrel, PacketType::kPubcomp}) {
    const std::string name = packetTypeName(type);
    s.push_back({name + "Id1", Ack{.type = type, .packetId = 1}});
    s.push_back({name + "Id65535", Ack{.type = type, .packetId = 65535}});
  }
  s.push_back({"UNSUBACKId1", Unsuback{.packetId = 1}});
  s.push_back({"UNSUBACKId65535", Unsuback{.packetId = 65535}});

  s.push_back(
      {"SubscribeOne", Subscribe{.packetId = 1, .subscriptions = {{.filter = "a/b", .qos = 0}}}});
  s.push_back({"SubscribeMany", Subscribe{.packetId = 65535,
                                          .subscriptions = {{.filter = "#", .qos = 2},
                                                            {.filter = "+", .qos = 1},
                                                            {.filter = "a/+/b/#", .qos = 0},
                                                            {.filter = "$SYS/#", .qos = 1},
                                                            {.filter = "/", .qos = 2}}}});
  s.push_back(
      {"SubscribeMaxFilter",
       Subscribe{.packetId = 9, .subscriptions = {{.filter = std::string(65535, 'f'), .qos = 1}}}});

  s.push_back({"SubackOne", Suback{.packetId = 1, .returnCodes = {0}}});
  s.push_back(
      {"SubackAllCodes", Suback{.packetId = 65535, .returnCodes = {0, 1, 2, kSubackFailure}}});

  s.push_back({"UnsubscribeOne", Unsubscribe{.packetId = 3, .filters = {"a/#"}}});
  s.push_back({"UnsubscribeMany",
               Unsubscribe{.packetId = 65535, .filters = {"+/+", "#", "x", "\xF0\x9F\x98\x80"}}});

  s.push_back({"Pingreq", Empty{PacketType::kPingreq}});
  s.push_back({"Pingresp", Empty{PacketType::kPingresp}});
  s.push_back({"Disconnect", Disconnect{}});
  return s;
}

class SampleTest : public ::testing::TestWithParam<Sample> {};

TEST_P(SampleTest, RoundTrip) {
  const Packet& packet = GetParam().packet;
  const std::string bytes = encoded(packet);
  const Frame frame = splitFrame(bytes, kNoLimit);
  ASSERT_EQ(frame.status, DecodeStatus::kOk) << frame.error;
  EXPECT_EQ(frame.size, bytes.size());
  EXPECT_EQ(frame.header >> 4, static_cast<int>(packetType(packet)));
  Packet parsed;
  const ParseResult result = parsePacket(frame.header, frame.body, parsed);
  ASSERT_EQ(result.status, DecodeStatus::kOk) << result.error;
  EXPECT_TRUE(parsed == packet);
  EXPECT_EQ(packetType(parsed), packetType(packet));
  // Encoding is canonical: the parsed packet encodes to the same bytes.
  EXPECT_EQ(encoded(parsed), bytes);
}

TEST_P(SampleTest, OneByteAtATime) {
  const std::string bytes = encoded(GetParam().packet);
  std::string buffer;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const Frame partial = splitFrame(buffer, kNoLimit);
    ASSERT_EQ(partial.status, DecodeStatus::kNeedMore) << "at byte " << i;
    buffer.push_back(bytes[i]);
  }
  const Frame frame = splitFrame(buffer, kNoLimit);
  ASSERT_EQ(frame.status, DecodeStatus::kOk);
  EXPECT_EQ(frame.size, bytes.size());
  Packet parsed;
  ASSERT_EQ(parsePacket(frame.header, frame.body, parsed).status, DecodeStatus::kOk);
  EXPECT_TRUE(parsed == GetParam().packet);
}

TEST_P(SampleTest, CoalescedWithEveryOtherSample) {
  const std::string first = encoded(GetParam().packet);
  for (const Sample& other : samples()) {
    SCOPED_TRACE(other.name);
    const std::string second = encoded(other.packet);
    // Two whole packets plus the first byte of a third one.
    const std::string buffer = first + second + first.substr(0, 1);
    std::string_view rest = buffer;

    Frame frame = splitFrame(rest, kNoLimit);
    ASSERT_EQ(frame.status, DecodeStatus::kOk);
    ASSERT_EQ(frame.size, first.size());
    Packet parsed;
    ASSERT_EQ(parsePacket(frame.header, frame.body, parsed).status, DecodeStatus::kOk);
    EXPECT_TRUE(parsed == GetParam().packet);
    rest.remove_prefix(frame.size);

    frame = splitFrame(rest, kNoLimit);
    ASSERT_EQ(frame.status, DecodeStatus::kOk);
    ASSERT_EQ(frame.size, second.size());
    ASSERT_EQ(parsePacket(frame.header, frame.body, parsed).status, DecodeStatus::kOk);
    EXPECT_TRUE(parsed == other.packet);
    rest.remove_prefix(frame.size);

    EXPECT_EQ(splitFrame(rest, kNoLimit).status, DecodeStatus::kNeedMore);
  }
}

TEST_P(SampleTest, TooLargeByOneByte) {
  const std::string bytes = encoded(GetParam().packet);
  const auto size = static_cast<std::uint32_t>(bytes.size());
  EXPECT_EQ(splitFrame(bytes, size).status, DecodeStatus::kOk);
  const Frame frame = splitFrame(bytes, size - 1);
  EXPECT_EQ(frame.status, DecodeStatus::kTooLarge);
  EXPECT_NE(frame.error, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Mqtt, SampleTest, ::testing::ValuesIn(samples()),
                         [](const ::testing::TestParamInfo<Sample>& param) {
                           return param.param.name;
                         });

// Remaining-length varint boundaries: where the encoding grows from 1 to 4 bytes.
struct LengthCase {
  std::size_t remaining;
  std::string lengthBytes;
};

class RemainingLengthTest : public ::testing::TestWithParam<LengthCase> {};

TEST_P(RemainingLengthTest, PublishOfExactRemainingLength) {
  const LengthCase& c = GetParam();
  // Topic "t" takes 3 bytes of the remaining length at QoS 0; the payload fills the rest.
  const Publish publish{.topic = "t", .payload = std::string(c.remaining - 3, 'p')};
  const std::string bytes = encoded(publish);
  ASSERT_EQ(bytes.size(), 1 + c.lengthBytes.size() + c.remaining);
  EXPECT_EQ(bytes.substr(1, c.lengthBytes.size()), c.lengthBytes);

  const testing::Decoded d = decodeOne(bytes);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_TRUE(d.packet == Packet{publish});

  // Length known but body incomplete; and length bytes themselves incomplete.
  EXPECT_EQ(splitFrame(std::string_view(bytes).substr(0, bytes.size() - 1), kNoLimit).status,
            DecodeStatus::kNeedMore);
  for (std::size_t n = 0; n <= c.lengthBytes.size(); ++n) {
    EXPECT_EQ(splitFrame(std::string_view(bytes).substr(0, n), kNoLimit).status,
              DecodeStatus::kNeedMore);
  }
  // The limit is enforced from the header alone, before the body arrives.
  const auto size = static_cast<std::uint32_t>(bytes.size());
  const std::string_view headerOnly = std::string_view(bytes).substr(0, 1 + c.lengthBytes.size());
  EXPECT_EQ(splitFrame(headerOnly, size - 1).status, DecodeStatus::kTooLarge);
  EXPECT_EQ(splitFrame(headerOnly, size).status, DecodeStatus::kNeedMore);
}

INSTANTIATE_TEST_SUITE_P(Mqtt, RemainingLengthTest,
                         ::testing::Values(LengthCase{127, "\x7F"}, LengthCase{128, "\x80\x01"},
                                           LengthCase{16383, "\xFF\x7F"},
                                           LengthCase{16384, "\x80\x80\x01"},
                                           LengthCase{2097151, "\xFF\xFF\x7F"},
                                           LengthCase{2097152, "\x80\x80\x80\x01"}),
                         [](const ::testing::TestParamInfo<LengthCase>& param) {
                           return "Remaining" + std::to_string(param.param.remaining);
                         });

TEST(MqttSplitFrame, EmptyInputNeedsMore) {
  const Frame frame = splitFrame({}, kNoLimit);
  EXPECT_EQ(frame.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(frame.size, 0u);
}

TEST(MqttSplitFrame, MaximumRemainingLength) {
  // 268,435,455 is the largest four-byte length: framed as "need more", or too large.
  const std::string header = "\x30\xFF\xFF\xFF\x7F";
  constexpr std::uint32_t kTotal = 5 + 268'435'455;
  EXPECT_EQ(splitFrame(header, kNoLimit).status, DecodeStatus::kNeedMore);
  EXPECT_EQ(splitFrame(header, kTotal).status, DecodeStatus::kNeedMore);
  const Frame frame = splitFrame(header, kTotal - 1);
  EXPECT_EQ(frame.status, DecodeStatus::kTooLarge);
  EXPECT_EQ(frame.size, kTotal);
}

TEST(MqttSplitFrame, FifthLengthByteIsMalformed) {
  // Decided as soon as the fourth byte carries a continuation bit.
  EXPECT_EQ(splitFrame("\x30\xFF\xFF\xFF", kNoLimit).status, DecodeStatus::kNeedMore);
  const Frame frame = splitFrame("\x30\xFF\xFF\xFF\xFF", kNoLimit);
  EXPECT_EQ(frame.status, DecodeStatus::kMalformed);
  EXPECT_NE(frame.error, nullptr);
  EXPECT_EQ(splitFrame("\x30\x80\x80\x80\x80\x01", kNoLimit).status, DecodeStatus::kMalformed);
}

TEST(MqttSplitFrame, ReservedTypeIsMalformedFromTheFirstByte) {
  EXPECT_EQ(splitFrame(std::string_view("\x00", 1), kNoLimit).status, DecodeStatus::kMalformed);
  // Type 15 is AUTH in MQTT 5: framed, and refused by the 3.1.1 parser.
  EXPECT_EQ(splitFrame("\xF0", kNoLimit).status, DecodeStatus::kNeedMore);
  EXPECT_EQ(splitFrame(std::string_view("\xF0\x00", 2), kNoLimit).status, DecodeStatus::kOk);
}

TEST(MqttSplitFrame, BodyIsAViewOfTheInput) {
  const std::string bytes = encoded(Ack{.type = PacketType::kPuback, .packetId = 0x1234});
  const Frame frame = splitFrame(bytes, kNoLimit);
  ASSERT_EQ(frame.status, DecodeStatus::kOk);
  EXPECT_EQ(frame.header, 0x40);
  EXPECT_EQ(frame.body, "\x12\x34");
  EXPECT_EQ(frame.body.data(), bytes.data() + 2);
}

TEST(MqttSplitFrame, TooLargeHeaderOnly) {
  // A 1 MiB PUBLISH against a 64 KiB limit is refused after 4 bytes.
  const std::string header = std::string("\x30") + testing::varint(1 << 20);
  const Frame frame = splitFrame(header, 64 * 1024);
  EXPECT_EQ(frame.status, DecodeStatus::kTooLarge);
  EXPECT_NE(frame.error, nullptr);
}

TEST(MqttEncode, FixedHeaderBytes) {
  EXPECT_EQ(encoded(Empty{PacketType::kPingreq}), std::string("\xC0\x00", 2));
  EXPECT_EQ(encoded(Empty{PacketType::kPingresp}), std::string("\xD0\x00", 2));
  EXPECT_EQ(encoded(Empty{PacketType::kDisconnect}), std::string("\xE0\x00", 2));
  EXPECT_EQ(encoded(Ack{.type = PacketType::kPubrel, .packetId = 1}),
            std::string("\x62\x02\x00\x01", 4));
  EXPECT_EQ(encoded(Ack{.type = PacketType::kUnsuback, .packetId = 258}),
            std::string("\xB0\x02\x01\x02", 4));
  EXPECT_EQ(encoded(Connack{.sessionPresent = true}), std::string("\x20\x02\x01\x00", 4));
  std::string out;
  encodePublish("a", "b", 1, true, true, 10, out);
  EXPECT_EQ(out, std::string("\x3B\x06\x00\x01"
                             "a\x00\x0A"
                             "b",
                             8));
}

TEST(MqttEncode, ConnectLayout) {
  const Connect connect{.protocolName = "MQTT",
                        .cleanSession = true,
                        .keepAlive = 60,
                        .clientId = "id",
                        .will = Will{.topic = "w", .payload = "x", .qos = 1, .retain = true},
                        .username = "u",
                        .password = "p"};
  const std::string expected = testing::raw(
      0x10, testing::str("MQTT") + "\x04" + "\xEE" + testing::u16(60) + testing::str("id") +
                testing::str("w") + testing::str("x") + testing::str("u") + testing::str("p"));
  EXPECT_EQ(encoded(connect), expected);
}

TEST(MqttEncode, AppendsToExistingOutput) {
  std::string out = "prefix";
  encodeEmpty(PacketType::kPingreq, out);
  encodeAck(PacketType::kPuback, 5, out);
  EXPECT_EQ(out, std::string("prefix\xC0\x00\x40\x02\x00\x05", 12));
}

TEST(MqttNames, TypesAndStatuses) {
  EXPECT_STREQ(packetTypeName(PacketType::kUnsubscribe), "UNSUBSCRIBE");
  EXPECT_STREQ(packetTypeName(PacketType::kConnect), "CONNECT");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kMalformed), "malformed");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kTooLarge), "too large");
}

}  // namespace
}  // namespace tern::codec::mqtt
