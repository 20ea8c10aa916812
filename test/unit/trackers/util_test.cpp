#include "codec/trackers/util.h"

#include <gtest/gtest.h>

#include "codec/trackers/position.h"
#include "codec/trackers/protocol.h"
#include "frame_corpus.h"

namespace tern::codec::trackers {
namespace {

TEST(TrackerUtil, Crc16CheckValues) {
  // The standard check input "123456789" for each CRC variant.
  EXPECT_EQ(crc16X25("123456789"), 0x906E);
  EXPECT_EQ(crc16Arc("123456789"), 0xBB3D);
  EXPECT_EQ(crc16Kermit("123456789"), 0x2189);
}

TEST(TrackerUtil, Gt06LoginAckCrcMatchesReference) {
  // From the reference notes: login ack 78 78 05 01 00 04 8e 71 0d 0a.
  auto body = fromHex("05010004");
  ASSERT_TRUE(body);
  EXPECT_EQ(crc16X25(*body), 0x8e71);
}

TEST(TrackerUtil, HexRoundTripAndErrors) {
  EXPECT_EQ(toHex(*fromHex("00ff7A")), "00ff7a");
  EXPECT_FALSE(fromHex("abc"));
  EXPECT_FALSE(fromHex("zz"));
  EXPECT_EQ(bcdDigits(*fromHex("0352887071911998")), "0352887071911998");
}

TEST(TrackerUtil, ByteReaderFailsPastTheEnd) {
  ByteReader r(std::string_view("\x01\x02\x03", 3));
  EXPECT_EQ(r.u16(), 0x0102);
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(r.u16(), 0);
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(TrackerUtil, CivilTime) {
  EXPECT_EQ(*civilToMicros(1970, 1, 1, 0, 0, 0), 0);
  EXPECT_EQ(*civilToMicros(2015, 10, 20, 14, 21, 11), 1445350871LL * 1'000'000);
  EXPECT_FALSE(civilToMicros(2015, 13, 1, 0, 0, 0));
  EXPECT_EQ(*test::parseCorpusTime("2015-10-20 14:21:11.000"), 1445350871LL * 1'000'000);
}

TEST(TrackerPosition, AttributesAndAlarms) {
  Position p;
  p.set(attr::kIgnition, true);
  p.set(attr::kIgnition, false);
  p.addAlarm("sos");
  p.addAlarm("overspeed");
  ASSERT_NE(p.get(attr::kIgnition), nullptr);
  EXPECT_EQ(std::get<bool>(*p.get(attr::kIgnition)), false);
  EXPECT_EQ(std::get<std::string>(*p.get(attr::kAlarm)), "sos,overspeed");
  EXPECT_EQ(p.attributes.size(), 2u);
}

TEST(TrackerRegistry, EveryProtocolIsRegisteredOnce) {
  for (const char* name :
       {"gt06", "teltonika", "h02", "tk103", "gps103", "gl200", "meitrack", "ruptela"}) {
    const ProtocolInfo* info = findProtocol(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_NE(info->create(), nullptr);
    EXPECT_GT(info->maxFrameSize, 0u);
  }
  EXPECT_EQ(findProtocol("nope"), nullptr);
}

TEST(TrackerSession, IdentifyAsksAcceptance) {
  SessionState session;
  session.accept = [](const std::string& id) { return id == "123"; };
  EXPECT_FALSE(session.identify("456"));
  EXPECT_FALSE(session.identified());
  EXPECT_TRUE(session.identify("123"));
  EXPECT_EQ(session.deviceId, "123");
}

}  // namespace
}  // namespace tern::codec::trackers
