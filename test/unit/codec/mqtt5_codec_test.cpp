// MQTT 5.0: round trips of every packet type with properties, one byte at a time, the shortest
// forms of acks and DISCONNECT, and the malformed / protocol-error cases with their reason codes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codec/mqtt/codec.h"
#include "unit/codec/mqtt_test_util.h"

namespace tern::codec::mqtt {
namespace {

using testing::kNoLimit;
using testing::raw;
using testing::str;
using testing::u16;

constexpr auto kV5 = ProtocolVersion::kV5;

std::string encoded5(const Packet& packet) {
  std::string out;
  encode(packet, out, kV5);
  return out;
}

testing::Decoded decode5(std::string_view bytes) {
  testing::Decoded d;
  const Frame frame = splitFrame(bytes, kNoLimit);
  if (frame.status != DecodeStatus::kOk) {
    d.status = frame.status;
    d.error = frame.error;
    return d;
  }
  const ParseResult result = parsePacket(frame.header, frame.body, d.packet, kV5);
  d.status = result.status;
  d.error = result.error;
  return d;
}

struct Sample {
  std::string name;
  Packet packet;
};

void PrintTo(const Sample& sample, std::ostream* os) {
  *os << sample.name;
}

Properties publishProperties() {
  Properties p;
  p.payloadFormatIndicator = 1;
  p.messageExpiryInterval = 3600;
  p.contentType = "application/json";
  p.responseTopic = "reply/to/me";
  p.correlationData = std::string("\0\x01\xFF", 3);
  p.subscriptionIdentifiers = {1, 127, 128, 16383, 16384, 268'435'455};
  p.topicAlias = 7;
  p.userProperties = {{"a", "1"}, {"a", "2"}, {"", ""}, {"k\xC3\xA9y", "v"}};
  return p;
}

std::vector<Sample> samples() {
  std::vector<Sample> s;
  Connect connect{.protocolName = "MQTT", .protocolLevel = 5, .keepAlive = 30, .clientId = "c5"};
  s.push_back({"ConnectMinimal", connect});
  Connect full = connect;
  full.cleanSession = false;
  full.will = Will{.topic = "will/t", .payload = std::string("bye\0", 4), .qos = 1, .retain = true};
  full.will->properties.willDelayInterval = 30;
  full.will->properties.messageExpiryInterval = 60;
  full.will->properties.payloadFormatIndicator = 0;
  full.will->properties.contentType = "text/plain";
  full.will->properties.responseTopic = "r";
  full.will->properties.correlationData = "cd";
  full.will->properties.userProperties = {{"w", "x"}};
  full.username = "u";
  full.password = std::string("p\0w", 3);
  full.properties.sessionExpiryInterval = 0xFFFFFFFF;
  full.properties.receiveMaximum = 10;
  full.properties.maximumPacketSize = 4096;
  full.properties.topicAliasMaximum = 5;
  full.properties.requestResponseInformation = 1;
  full.properties.requestProblemInformation = 0;
  full.properties.authenticationMethod = "SCRAM-SHA-1";
  full.properties.authenticationData = std::string("\x00\x01", 2);
  full.properties.userProperties = {{"connect", "prop"}};
  s.push_back({"ConnectFull", full});
  // MQTT 5 allows a password without a user name.
  Connect passwordOnly = connect;
  passwordOnly.password = "secret";
  s.push_back({"ConnectPasswordOnly", passwordOnly});

  s.push_back({"ConnackMinimal", Connack{}});
  Connack connack{.sessionPresent = true};
  connack.properties.sessionExpiryInterval = 100;
  connack.properties.receiveMaximum = 64;
  connack.properties.maximumQos = 1;
  connack.properties.retainAvailable = 1;
  connack.properties.maximumPacketSize = 1 << 20;
  connack.properties.assignedClientIdentifier = "auto-1";
  connack.properties.topicAliasMaximum = 10;
  connack.properties.reasonString = "welcome";
  connack.properties.userProperties = {{"x", "y"}};
  connack.properties.wildcardSubscriptionAvailable = 1;
  connack.properties.subscriptionIdentifierAvailable = 1;
  connack.properties.sharedSubscriptionAvailable = 0;
  connack.properties.serverKeepAlive = 120;
  connack.properties.responseInformation = "resp/";
  connack.properties.serverReference = "other:1883";
  connack.properties.authenticationMethod = "m";
  connack.properties.authenticationData = "d";
  s.push_back({"ConnackFull", connack});
  s.push_back(
      {"ConnackBadAuthMethod", Connack{.returnCode = ConnackCode::kBadAuthenticationMethod}});

  s.push_back({"PublishQos0NoProperties", Publish{.topic = "a/b", .payload = "x"}});
  s.push_back({"PublishQos2AllProperties", Publish{.topic = "t",
                                                   .payload = "payload",
                                                   .qos = 2,
                                                   .retain = true,
                                                   .dup = true,
                                                   .packetId = 9,
                                                   .properties = publishProperties()}});
  Publish aliasOnly{.topic = "", .payload = "p", .qos = 1, .packetId = 2};
  aliasOnly.properties.topicAlias = 3;
  s.push_back({"PublishEmptyTopicWithAlias", aliasOnly});

  for (const PacketType type :
       {PacketType::kPuback, PacketType::kPubrec, PacketType::kPubrel, PacketType::kPubcomp}) {
    const std::string name = packetTypeName(type);
    s.push_back({name + "Success", Ack{.type = type, .packetId = 1}});
    const std::uint8_t code =
        type == PacketType::kPuback || type == PacketType::kPubrec ? 0x10 : 0x92;
    s.push_back({name + "ReasonOnly", Ack{.type = type, .packetId = 2, .reasonCode = code}});
    Ack withProps{.type = type, .packetId = 65535, .reasonCode = 0};
    withProps.properties.reasonString = "because";
    withProps.properties.userProperties = {{"n", "v"}};
    s.push_back({name + "WithProperties", withProps});
  }

  Subscribe subscribe{.packetId = 5,
                      .subscriptions = {{.filter = "a/#", .qos = 2, .noLocal = true},
                                        {.filter = "b/+", .qos = 1, .retainAsPublished = true},
                                        {.filter = "c", .qos = 0, .retainHandling = 1},
                                        {.filter = "$share/g/d/#", .qos = 1, .retainHandling = 2}}};
  subscribe.properties.subscriptionIdentifiers = {42};
  subscribe.properties.userProperties = {{"s", "1"}};
  s.push_back({"SubscribeOptions", subscribe});
  s.push_back({"SubscribeNoProperties",
               Subscribe{.packetId = 1, .subscriptions = {{.filter = "x", .qos = 0}}}});

  Suback suback{.packetId = 5, .returnCodes = {0x00, 0x01, 0x02, 0x80, 0x8F, 0x9E, 0xA1, 0xA2}};
  suback.properties.reasonString = "mixed";
  s.push_back({"SubackReasons", suback});

  Unsubscribe unsubscribe{.packetId = 6, .filters = {"a/#", "$share/g/x"}};
  unsubscribe.properties.userProperties = {{"u", "v"}};
  s.push_back({"Unsubscribe", unsubscribe});
  s.push_back({"Unsuback", Unsuback{.packetId = 6, .reasonCodes = {0x00, 0x11}}});

  s.push_back({"Pingreq", Empty{PacketType::kPingreq}});
  s.push_back({"Pingresp", Empty{PacketType::kPingresp}});
  s.push_back({"DisconnectNormal", Disconnect{}});
  s.push_back({"DisconnectWithWill", Disconnect{.reasonCode = reason::kDisconnectWithWill}});
  Disconnect takeover{.reasonCode = reason::kSessionTakenOver};
  takeover.properties.reasonString = "another connection";
  takeover.properties.serverReference = "s";
  s.push_back({"DisconnectTakenOver", takeover});
  Disconnect expiry{};
  expiry.properties.sessionExpiryInterval = 0;
  s.push_back({"DisconnectSessionExpiry", expiry});

  s.push_back({"AuthSuccess", Auth{}});
  Auth cont{.reasonCode = reason::kContinueAuthentication};
  cont.properties.authenticationMethod = "SCRAM-SHA-1";
  cont.properties.authenticationData = "nonce";
  s.push_back({"AuthContinue", cont});
  return s;
}

class Sample5Test : public ::testing::TestWithParam<Sample> {};

TEST_P(Sample5Test, RoundTrip) {
  const Packet& packet = GetParam().packet;
  const std::string bytes = encoded5(packet);
  const testing::Decoded d = decode5(bytes);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_TRUE(d.packet == packet);
  EXPECT_EQ(encoded5(d.packet), bytes);
}

TEST_P(Sample5Test, OneByteAtATime) {
  const std::string bytes = encoded5(GetParam().packet);
  std::string buffer;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    ASSERT_EQ(splitFrame(buffer, kNoLimit).status, DecodeStatus::kNeedMore) << "at byte " << i;
    buffer.push_back(bytes[i]);
  }
  const Frame frame = splitFrame(buffer, kNoLimit);
  ASSERT_EQ(frame.status, DecodeStatus::kOk);
  EXPECT_EQ(frame.size, bytes.size());
  Packet parsed;
  ASSERT_EQ(parsePacket(frame.header, frame.body, parsed, kV5).status, DecodeStatus::kOk);
  EXPECT_TRUE(parsed == GetParam().packet);
}

TEST_P(Sample5Test, EveryTruncationIsRejectedOrNeedsMore) {
  // Cutting the body short (with a length that matches the cut) never parses as the original.
  const std::string bytes = encoded5(GetParam().packet);
  const Frame whole = splitFrame(bytes, kNoLimit);
  ASSERT_EQ(whole.status, DecodeStatus::kOk);
  for (std::size_t n = 0; n < whole.body.size(); ++n) {
    Packet parsed;
    const ParseResult result = parsePacket(whole.header, whole.body.substr(0, n), parsed, kV5);
    if (result.status == DecodeStatus::kOk) {
      EXPECT_FALSE(parsed == GetParam().packet) << "cut at " << n;
    } else {
      EXPECT_NE(result.error, nullptr);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Mqtt5, Sample5Test, ::testing::ValuesIn(samples()),
                         [](const ::testing::TestParamInfo<Sample>& param) {
                           return param.param.name;
                         });

TEST(Mqtt5Encode, AcksUseTheShortestForm) {
  std::string out;
  encodeAck5(PacketType::kPuback, 1, reason::kSuccess, nullptr, out);
  EXPECT_EQ(out, std::string("\x40\x02\x00\x01", 4));
  out.clear();
  encodeAck5(PacketType::kPuback, 1, reason::kNoMatchingSubscribers, nullptr, out);
  EXPECT_EQ(out, std::string("\x40\x03\x00\x01\x10", 5));
  out.clear();
  encodeAck5(PacketType::kPubrel, 1, reason::kSuccess, nullptr, out);
  EXPECT_EQ(out, std::string("\x62\x02\x00\x01", 4));
  out.clear();
  encodeDisconnect5(reason::kSuccess, nullptr, out);
  EXPECT_EQ(out, std::string("\xE0\x00", 2));
  out.clear();
  encodeDisconnect5(reason::kSessionTakenOver, nullptr, out);
  EXPECT_EQ(out, std::string("\xE0\x01\x8E", 3));
}

TEST(Mqtt5Encode, PublishLayout) {
  Properties p;
  p.topicAlias = 1;
  std::string out;
  encodePublish5("a", "b", 1, false, false, 10, &p, nullptr, out);
  EXPECT_EQ(out, std::string("\x32\x0A\x00\x01"
                             "a\x00\x0A\x03\x23\x00\x01"
                             "b",
                             12));
  // Overrides replace the message's expiry, alias and subscription identifiers.
  const std::vector<std::uint32_t> ids{200};
  PublishOverrides overrides{.messageExpiryInterval = 5, .subscriptionIdentifiers = &ids};
  out.clear();
  encodePublish5("a", "", 0, false, false, 0, &p, &overrides, out);
  EXPECT_EQ(out, std::string("\x30\x0C\x00\x01"
                             "a\x08\x02\x00\x00\x00\x05\x0B\xC8\x01",
                             14));
}

TEST(Mqtt5Parse, ShortAcksAndDisconnectMeanSuccess) {
  testing::Decoded d = decode5(raw(0x40, u16(7)));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_EQ(std::get<Ack>(d.packet).reasonCode, 0);
  d = decode5(raw(0x40, u16(7) + "\x10"));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_EQ(std::get<Ack>(d.packet).reasonCode, 0x10);
  d = decode5(raw(0x40, u16(7) + std::string("\x00\x00", 2)));  // explicit empty properties
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_TRUE((d.packet == Packet{Ack{.type = PacketType::kPuback, .packetId = 7}}));
  d = decode5(raw(0xE0, ""));
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_TRUE(d.packet == Packet{Disconnect{}});
}

TEST(Mqtt5Parse, ThreeOneOneConnectionRejectsAuth) {
  Packet out;
  const ParseResult result = parsePacket(0xF0, "", out, ProtocolVersion::kV311);
  EXPECT_EQ(result.status, DecodeStatus::kMalformed);
  EXPECT_EQ(parsePacket(0xF0, "", out, kV5).status, DecodeStatus::kOk);
}

TEST(Mqtt5Parse, ConnectIsParsedByItsOwnLevel) {
  // A v5 CONNECT parses whatever version the caller assumed (none is known before CONNECT).
  Connect c{.protocolName = "MQTT", .protocolLevel = 5, .clientId = "x"};
  c.properties.sessionExpiryInterval = 10;
  const std::string bytes = encoded5(c);
  const testing::Decoded d = testing::decodeOne(bytes);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << d.error;
  EXPECT_TRUE(d.packet == Packet{c});
}

struct Bad5 {
  std::string name;
  std::string bytes;
  std::uint8_t reasonCode;
  std::string errorMentions;
};

void PrintTo(const Bad5& c, std::ostream* os) {
  *os << c.name;
}

std::string prop(std::uint8_t id, const std::string& value) {
  return std::string(1, static_cast<char>(id)) + value;
}

// A property block: length + properties.
std::string props(const std::string& body) {
  return testing::varint(body.size()) + body;
}

std::string connect5(const std::string& properties, std::uint8_t flags = 0x02,
                     const std::string& payload = str("c")) {
  return raw(0x10, str("MQTT") + "\x05" + std::string(1, static_cast<char>(flags)) + u16(60) +
                       properties + payload);
}

std::vector<Bad5> badCases() {
  const std::string none = props("");
  const std::string b0 = std::string(1, '\0');
  std::vector<Bad5> c = {
      {"ConnectPropertiesMissing", raw(0x10, str("MQTT") + "\x05\x02" + u16(60)), 0x81,
       "property length is missing"},
      {"ConnectPropertiesTooLong", connect5("\x05" + prop(0x11, "\x00")), 0x81,
       "properties are longer than the packet"},
      {"PropertyLengthNotMinimal", connect5(std::string("\x80\x00", 2)), 0x81,
       "not a valid variable byte integer"},
      {"UnknownProperty", connect5(props(prop(0x04, "\x00"))), 0x81, "identifier is unknown"},
      {"PropertyNotAllowedInConnect", connect5(props(prop(0x23, u16(1)))), 0x81,
       "not allowed in this packet"},
      {"DuplicateSessionExpiry",
       connect5(props(prop(0x11, std::string(4, '\0')) + prop(0x11, std::string(4, '\0')))), 0x82,
       "more than once"},
      {"ReceiveMaximumZero", connect5(props(prop(0x21, u16(0)))), 0x82, "receive maximum is 0"},
      {"MaximumPacketSizeZero", connect5(props(prop(0x27, std::string(4, '\0')))), 0x82,
       "maximum packet size is 0"},
      {"RequestProblemInformation2", connect5(props(prop(0x17, "\x02"))), 0x82, "not 0 or 1"},
      {"AuthDataWithoutMethod", connect5(props(prop(0x16, str("d")))), 0x82,
       "authentication data without"},
      {"PropertyValueTruncated", connect5(props(prop(0x11, "\x00\x00"))), 0x81, "truncated"},
      {"UserPropertyBadUtf8", connect5(props(prop(0x26, str("\xFF") + str("v")))), 0x81,
       "not valid UTF-8"},
      {"ContentTypeNotInConnect", connect5(props(prop(0x03, str("text")))), 0x81, "not allowed"},
      {"WillPropertiesMissing", connect5(none, 0x06, str("c")), 0x81, "property length"},
      {"WillPropertyNotAllowed",
       connect5(none, 0x06,
                str("c") + props(prop(0x11, std::string(4, '\0'))) + str("w") + str("x")),
       0x81, "not allowed"},

      {"ConnackReasonInvalid", raw(0x20, std::string("\x00\x01", 2) + none), 0x82, "reason code"},
      {"ConnackNoProperties", raw(0x20, std::string("\x00\x00", 2)), 0x81, "property length"},

      {"PublishPayloadFormat2", raw(0x30, str("t") + props(prop(0x01, "\x02"))), 0x82,
       "payload format"},
      {"PublishTopicAliasZero", raw(0x30, str("t") + props(prop(0x23, u16(0)))), 0x82,
       "topic alias is 0"},
      {"PublishEmptyTopicNoAlias", raw(0x30, str("") + none), 0x82, "without a topic alias"},
      {"PublishSubscriptionIdZero", raw(0x30, str("t") + props(prop(0x0B, b0))), 0x82,
       "subscription identifier is 0"},
      {"PublishResponseTopicWildcard", raw(0x30, str("t") + props(prop(0x08, str("a/#")))), 0x82,
       "response topic"},
      {"PublishDuplicateContentType",
       raw(0x30, str("t") + props(prop(0x03, str("a")) + prop(0x03, str("b")))), 0x82,
       "more than once"},
      {"PublishSessionExpiryNotAllowed",
       raw(0x30, str("t") + props(prop(0x11, std::string(4, '\0')))), 0x81, "not allowed"},

      {"PubackReasonInvalid", raw(0x40, u16(1) + "\x92"), 0x82, "reason code"},
      {"PubrelReasonInvalid", raw(0x62, u16(1) + "\x10"), 0x82, "reason code"},
      {"PubackTrailing", raw(0x40, u16(1) + std::string("\x00\x00\x00", 3)), 0x81, "trailing"},

      {"SubscribeNoProperties", raw(0x82, u16(1)), 0x81, "property length"},
      {"SubscribeNoFilter", raw(0x82, u16(1) + none), 0x82, "no topic filter"},
      {"SubscribeReservedOptionBits", raw(0x82, u16(1) + none + str("a") + "\x40"), 0x81,
       "reserved bits"},
      {"SubscribeRetainHandling3", raw(0x82, u16(1) + none + str("a") + "\x30"), 0x82,
       "retain handling is 3"},
      {"SubscribeNoLocalShared", raw(0x82, u16(1) + none + str("$share/g/a") + "\x04"), 0x82,
       "no local on a shared"},
      {"SubscribeTwoSubscriptionIds",
       raw(0x82, u16(1) + props(prop(0x0B, "\x01") + prop(0x0B, "\x02")) + str("a") + b0), 0x82,
       "more than once"},

      {"SubackReasonInvalid", raw(0x90, u16(1) + none + "\x03"), 0x82, "reason code"},
      {"UnsubackNoReasons", raw(0xB0, u16(1) + none), 0x81, "no reason codes"},
      {"UnsubackReasonInvalid", raw(0xB0, u16(1) + none + "\x10"), 0x82, "reason code"},

      {"DisconnectReasonInvalid", raw(0xE0, "\x01"), 0x82, "reason code"},
      {"DisconnectPropertyNotAllowed",
       raw(0xE0, std::string("\x00", 1) + props(prop(0x21, u16(1)))), 0x81, "not allowed"},
      {"AuthReasonInvalid", raw(0xF0, "\x01"), 0x82, "reason code"},
      {"AuthFlags", raw(0xF1, ""), 0x81, "AUTH fixed header flags"},
  };
  return c;
}

class Bad5Test : public ::testing::TestWithParam<Bad5> {};

TEST_P(Bad5Test, IsRejectedWithItsReasonCode) {
  const Bad5& c = GetParam();
  const Frame frame = splitFrame(c.bytes, kNoLimit);
  ASSERT_EQ(frame.status, DecodeStatus::kOk);
  Packet out = Empty{PacketType::kPingreq};
  const ParseResult result = parsePacket(frame.header, frame.body, out, kV5);
  EXPECT_EQ(result.status, DecodeStatus::kMalformed);
  ASSERT_NE(result.error, nullptr);
  EXPECT_NE(std::string(result.error).find(c.errorMentions), std::string::npos)
      << "error was: " << result.error;
  EXPECT_EQ(result.reasonCode, c.reasonCode) << "error was: " << result.error;
  EXPECT_TRUE(out == Packet{Empty{PacketType::kPingreq}});  // untouched
}

INSTANTIATE_TEST_SUITE_P(Mqtt5, Bad5Test, ::testing::ValuesIn(badCases()),
                         [](const ::testing::TestParamInfo<Bad5>& param) {
                           return param.param.name;
                         });

TEST(Mqtt5Frame, TooLargeCarriesReasonCode) {
  const Frame frame = splitFrame(raw(0x30, str("t") + std::string(100, 'x')), 50);
  EXPECT_EQ(frame.status, DecodeStatus::kTooLarge);
  EXPECT_EQ(frame.reasonCode, reason::kPacketTooLarge);
}

}  // namespace
}  // namespace tern::codec::mqtt
