// GPS103 / Coban: the reference corpus, stream splitting, frames with known values, commands.
#include "codec/trackers/gps103/gps103.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"

namespace tern::codec::trackers {
namespace {

constexpr std::int64_t kNow = 1'700'000'000'000'000;  // serverTimeUs passed to every decode
constexpr std::int64_t kSecond = 1'000'000;

bool endsWithDelimiter(const std::string& s) {
  return !s.empty() && (s.back() == ';' || s.back() == '*' || s.back() == '\n');
}

// The frame as a device puts it on the wire: Traccar's tests hand 40 sentences to the decoder
// without their ';' (the corpus notes say to append it for a TCP replay).
std::string wireFrame(const test::CorpusFrame& frame) {
  return endsWithDelimiter(frame.bytes) ? frame.bytes : frame.bytes + ";";
}

TEST(Gps103Corpus, EveryFrameDecodesAsExpected) {
  auto frames = test::loadCorpus("gps103");
  ASSERT_EQ(frames.size(), 81u);
  std::map<std::string, std::vector<const test::CorpusFrame*>> groups;
  for (const auto& frame : frames) groups[frame.testMethod].push_back(&frame);
  int checked = 0;
  for (const auto& [method, group] : groups) {
    auto codec = createGps103Codec();
    SessionState session;
    for (const test::CorpusFrame* frame : group) {
      if (frame->disabled) continue;
      std::string wire = wireFrame(*frame);
      FrameResult split = codec->splitFrame(wire);
      EXPECT_EQ(split.status, FrameStatus::kOk) << frame->id;
      EXPECT_EQ(split.size, wire.size()) << frame->id;
      DecodeResult result =
          codec->decode(std::string_view(wire).substr(0, split.size), session, kNow);
      EXPECT_EQ(test::checkExpectations(*frame, result), "") << frame->id << ": " << wire;
      EXPECT_EQ(test::checkResponse(*frame, result), "") << frame->id << ": " << wire;
      for (const auto& p : result.positions) {
        EXPECT_EQ(p.protocol, "gps103") << frame->id;
        EXPECT_FALSE(p.deviceId.empty()) << frame->id;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 81);
}

TEST(Gps103Corpus, NoSplitCasesInTheReference) {
  // Traccar has no frame decoder test for this protocol; the stream tests below cover splitting.
  EXPECT_TRUE(test::loadSplitCases("gps103").empty());
}

std::vector<std::string> corpusWireFrames() {
  std::vector<std::string> out;
  for (const auto& frame : test::loadCorpus("gps103")) out.push_back(wireFrame(frame));
  return out;
}

TEST(Gps103Split, ByteAtATime) {
  auto frames = corpusWireFrames();
  std::string stream;
  for (const auto& f : frames) stream += f;
  auto codec = createGps103Codec();
  std::string buffer;
  std::size_t next = 0;
  for (char c : stream) {
    buffer.push_back(c);
    FrameResult r = codec->splitFrame(buffer);
    if (r.status == FrameStatus::kNeedMore) {
      ASSERT_LT(next, frames.size());
      ASSERT_LT(buffer.size(), frames[next].size()) << "frame " << next << " not returned";
      continue;
    }
    ASSERT_EQ(r.status, FrameStatus::kOk) << "frame " << next;
    ASSERT_LT(next, frames.size());
    EXPECT_EQ(buffer.substr(0, r.size), frames[next]) << "frame " << next;
    buffer.erase(0, r.size);
    EXPECT_TRUE(buffer.empty());
    ++next;
  }
  EXPECT_EQ(next, frames.size());
}

// Splits a whole buffer; returns the frames and counts skipped bytes.
std::vector<std::string> splitAll(std::string buffer, std::size_t* skipped = nullptr) {
  auto codec = createGps103Codec();
  std::vector<std::string> out;
  while (!buffer.empty()) {
    FrameResult r = codec->splitFrame(buffer);
    if (r.status == FrameStatus::kNeedMore || r.status == FrameStatus::kTooLarge) break;
    if (r.size == 0 || r.size > buffer.size()) {
      ADD_FAILURE() << "bad split size";
      break;
    }
    if (r.status == FrameStatus::kOk) out.push_back(buffer.substr(0, r.size));
    if (r.status == FrameStatus::kSkip && skipped != nullptr) *skipped += r.size;
    buffer.erase(0, r.size);
  }
  return out;
}

TEST(Gps103Split, CoalescedAndWithGarbage) {
  auto frames = corpusWireFrames();
  std::string stream;
  std::string noisy = "\x00\xff\r\n--GARBAGE--";
  noisy.push_back('\0');
  for (const auto& f : frames) {
    stream += f;
    noisy += f + "\r\n\x01\x80zz";
  }
  EXPECT_EQ(splitAll(stream), frames);
  std::size_t skipped = 0;
  EXPECT_EQ(splitAll(noisy, &skipped), frames);
  EXPECT_GT(skipped, 0u);
}

TEST(Gps103Split, RawCorpusBytesBackToBack) {
  // Traccar's sentences exactly as in its tests (40 without a delimiter), sent back to back: each
  // ends where the next begins, so the answers and positions are those of the single sentences.
  // (The bare heartbeat before an "imei:" sentence joins it as an IMEI-prefixed sentence, which
  // yields the same "ON" and the same position.)
  auto frames = test::loadCorpus("gps103");
  std::string stream;
  std::string wantResponses;
  std::size_t wantPositions = 0;
  {
    auto codec = createGps103Codec();
    SessionState session;
    for (const auto& f : frames) {
      stream += f.bytes;
      DecodeResult r = codec->decode(f.bytes, session, kNow);
      wantResponses += r.response;
      wantPositions += r.positions.size();
    }
  }
  auto codec = createGps103Codec();
  SessionState session;
  std::string gotResponses;
  std::size_t gotPositions = 0;
  std::size_t count = 0;
  std::string_view rest = stream;
  while (!rest.empty()) {
    FrameResult r = codec->splitFrame(rest);
    ASSERT_EQ(r.status, FrameStatus::kOk) << rest.substr(0, 60);
    DecodeResult d = codec->decode(rest.substr(0, r.size), session, kNow);
    gotResponses += d.response;
    gotPositions += d.positions.size();
    rest.remove_prefix(r.size);
    ++count;
  }
  EXPECT_EQ(count, frames.size() - 1);
  EXPECT_EQ(gotResponses, wantResponses);
  EXPECT_EQ(gotPositions, wantPositions);
}

TEST(Gps103Split, PartialStartsAndLimits) {
  auto codec = createGps103Codec();
  EXPECT_EQ(codec->splitFrame("").status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame("im").status, FrameStatus::kNeedMore);  // maybe "imei:"
  EXPECT_EQ(codec->splitFrame("#").status, FrameStatus::kNeedMore);
  FrameResult skip = codec->splitFrame("ix imei:1;");
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 3u);  // up to the next 'i'
  EXPECT_EQ(codec->splitFrame("imei:123,tracker").status, FrameStatus::kNeedMore);
  std::string huge = "imei:" + std::string(9000, 'x');
  EXPECT_EQ(codec->splitFrame(huge).status, FrameStatus::kTooLarge);
  FrameResult crlf = codec->splitFrame("359586015829802\r\nimei:");
  EXPECT_EQ(crlf.status, FrameStatus::kOk);
  EXPECT_EQ(crlf.size, 17u);
  // Sentences without their delimiter end where the next visibly begins.
  FrameResult next = codec->splitFrame("imei:1,tracker,,,L,imei:2,tracker;");
  EXPECT_EQ(next.status, FrameStatus::kOk);
  EXPECT_EQ(next.size, 19u);
  FrameResult login = codec->splitFrame("##,imei:359586015829802,A359586015829802;");
  EXPECT_EQ(login.status, FrameStatus::kOk);
  EXPECT_EQ(login.size, 25u);
  EXPECT_EQ(codec->splitFrame("##,imei:359586015829802,A").status, FrameStatus::kNeedMore);
  FrameResult hash = codec->splitFrame("imei:1,x##,imei:2,A;");
  EXPECT_EQ(hash.size, 8u);
  FrameResult prefixed = codec->splitFrame("359769031878322imei:359769031878322,tracker;");
  EXPECT_EQ(prefixed.size, 44u);
}

// Test-only encoder for the regular position sentence, from known values.
struct KnownFix {
  std::string imei = "359710049092324";
  std::string keyword = "tracker";
  int year = 2024, month = 2, day = 29;  // UTC
  int hour = 23, minute = 59, second = 58, millis = 250;
  int zoneMinutes = 0;                 // the device's local offset from UTC
  double latitude = 0, longitude = 0;  // degrees
  double knots = 0, course = 0;
};

std::int64_t utcMicros(const KnownFix& fix) {
  return *civilToMicros(fix.year, fix.month, fix.day, fix.hour, fix.minute, fix.second, fix.millis);
}

std::string degreesMinutes(double value, int degreeDigits) {
  double a = std::fabs(value);
  int degrees = static_cast<int>(a);
  double minutes = (a - degrees) * 60;
  char out[32];
  std::snprintf(out, sizeof out, "%0*d%08.5f", degreeDigits, degrees, minutes);
  return out;
}

std::string encodeRegular(const KnownFix& fix) {
  std::int64_t localSeconds = utcMicros(fix) / kSecond + fix.zoneMinutes * 60;
  std::int64_t days = localSeconds / 86400;
  // civil from days (test-only, 1970-2099 range)
  int y = 1970;
  while (true) {
    int len = (y % 4 == 0) ? 366 : 365;
    if (days < len) break;
    days -= len;
    ++y;
  }
  static const int kMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int m = 0;
  while (true) {
    int len = kMonth[m] + (m == 1 && y % 4 == 0 ? 1 : 0);
    if (days < len) break;
    days -= len;
    ++m;
  }
  std::int64_t secondOfDay = localSeconds % 86400;
  char local[64];
  std::snprintf(local, sizeof local, "%02d%02d%02d%02d%02d", y % 100, m + 1,
                static_cast<int>(days) + 1, static_cast<int>(secondOfDay / 3600),
                static_cast<int>(secondOfDay / 60 % 60));
  char utc[64];
  std::snprintf(utc, sizeof utc, "%02d%02d%02d.%03d", fix.hour, fix.minute, fix.second, fix.millis);
  char speed[32];
  std::snprintf(speed, sizeof speed, "%.2f,%.2f", fix.knots, fix.course);
  return "imei:" + fix.imei + "," + fix.keyword + "," + local + ",,F," + utc + ",A," +
         degreesMinutes(fix.latitude, 2) + "," + (fix.latitude < 0 ? "S" : "N") + "," +
         degreesMinutes(fix.longitude, 3) + "," + (fix.longitude < 0 ? "W" : "E") + "," + speed +
         ";";
}

DecodeResult decodeOne(ProtocolCodec& codec, SessionState& session, const std::string& wire) {
  FrameResult split = codec.splitFrame(wire);
  EXPECT_EQ(split.status, FrameStatus::kOk) << wire;
  EXPECT_EQ(split.size, wire.size()) << wire;
  return codec.decode(wire, session, kNow);
}

TEST(Gps103Known, PositionsRoundTrip) {
  std::vector<KnownFix> fixes;
  KnownFix a;  // south-west, local time a day behind UTC (UTC-5 before midnight UTC)
  a.latitude = -33.868765;
  a.longitude = -151.209290;
  a.knots = 12.5;
  a.course = 271.25;
  a.zoneMinutes = -300;
  a.hour = 2;
  fixes.push_back(a);
  KnownFix b;  // north-east, local time a day ahead (UTC+9:30)
  b.latitude = 60.3383;
  b.longitude = 25.103233;
  b.knots = 0;
  b.course = 0;
  b.zoneMinutes = 570;
  fixes.push_back(b);
  KnownFix c;  // equator / Greenwich, UTC
  c.latitude = 0.000017;
  c.longitude = 179.999983;
  c.knots = 99.99;
  c.course = 359.99;
  c.month = 12;
  c.day = 31;
  fixes.push_back(c);

  for (const KnownFix& fix : fixes) {
    auto codec = createGps103Codec();
    SessionState session;
    std::string wire = encodeRegular(fix);
    DecodeResult r = decodeOne(*codec, session, wire);
    ASSERT_EQ(r.positions.size(), 1u) << wire;
    const Position& p = r.positions[0];
    EXPECT_EQ(p.deviceId, fix.imei);
    EXPECT_EQ(session.deviceId, fix.imei);
    EXPECT_EQ(p.deviceTimeUs, utcMicros(fix)) << wire;
    EXPECT_TRUE(p.valid);
    EXPECT_TRUE(p.hasLocation);
    EXPECT_NEAR(p.latitude, fix.latitude, 1e-6) << wire;
    EXPECT_NEAR(p.longitude, fix.longitude, 1e-6) << wire;
    EXPECT_NEAR(p.speedKmh, fix.knots * kKnotsToKmh, 1e-9) << wire;
    ASSERT_TRUE(p.course.has_value());
    EXPECT_NEAR(*p.course, fix.course, 1e-9);
    EXPECT_EQ(r.response, "");  // positions are not acknowledged
    ASSERT_TRUE(session.timeZoneOffsetSeconds.has_value());
    EXPECT_EQ(*session.timeZoneOffsetSeconds, fix.zoneMinutes * 60);
  }
}

TEST(Gps103Known, SessionTimeZoneAppliesToLocalOnlySentences) {
  auto codec = createGps103Codec();
  SessionState session;
  KnownFix fix;
  fix.zoneMinutes = 180;
  fix.latitude = 24.49193;
  fix.longitude = 44.40971;
  decodeOne(*codec, session, encodeRegular(fix));
  ASSERT_EQ(session.timeZoneOffsetSeconds, 10800);
  // Without a fix the sentence carries only the local time: 2024-03-01 02:00 local = 23:00 UTC.
  DecodeResult l =
      decodeOne(*codec, session, "imei:359710049092324,ac alarm,2403010200,,L,,,296a,,51f7,,,;");
  ASSERT_EQ(l.positions.size(), 1u);
  EXPECT_FALSE(l.positions[0].hasLocation);
  EXPECT_EQ(l.positions[0].deviceTimeUs, *civilToMicros(2024, 2, 29, 23, 0, 0));
  EXPECT_EQ(std::get<std::string>(*l.positions[0].get("alarm")), "powerCut");
  // OBD sentences use the same local clock.
  DecodeResult obd = decodeOne(
      *codec, session,
      "imei:359710049092324,OBD,240301020304,51442,0.00,15.88,5632,122,40.39%,95,0.00%,2101,"
      "13.80,P0137,,P0430,;");
  ASSERT_EQ(obd.positions.size(), 1u);
  const Position& o = obd.positions[0];
  EXPECT_EQ(o.deviceTimeUs, *civilToMicros(2024, 2, 29, 23, 3, 4));
  EXPECT_FALSE(o.hasLocation);
  EXPECT_EQ(std::get<std::int64_t>(*o.get("odometer")), 51442);
  EXPECT_DOUBLE_EQ(std::get<double>(*o.get("fuelConsumption")), 15.88);
  EXPECT_EQ(std::get<std::int64_t>(*o.get("hours")), 5632LL * 3600000);
  EXPECT_EQ(std::get<std::int64_t>(*o.get("obdSpeed")), 122);
  EXPECT_EQ(std::get<std::string>(*o.get("engineLoad")), "40.39%");
  EXPECT_EQ(std::get<std::int64_t>(*o.get("coolantTemp")), 95);
  EXPECT_EQ(std::get<std::string>(*o.get("throttle")), "0.00%");
  EXPECT_EQ(std::get<std::int64_t>(*o.get("rpm")), 2101);
  EXPECT_DOUBLE_EQ(std::get<double>(*o.get("battery")), 13.80);
  EXPECT_EQ(std::get<std::string>(*o.get("dtcs")), "P0137,P0430");
  // Another device on the session starts without a time zone.
  DecodeResult other = decodeOne(*codec, session, "imei:111111111111111,tracker,2403010200,,L,;");
  ASSERT_EQ(other.positions.size(), 1u);
  EXPECT_FALSE(session.timeZoneOffsetSeconds.has_value());
  EXPECT_EQ(other.positions[0].deviceTimeUs, *civilToMicros(2024, 3, 1, 2, 0, 0));
}

TEST(Gps103Known, AcknowledgementsAndAttributes) {
  auto codec = createGps103Codec();
  SessionState session;
  DecodeResult login = decodeOne(*codec, session, "##,imei:359586015829802,A;");
  EXPECT_EQ(login.response, "LOAD");
  EXPECT_TRUE(login.positions.empty());
  EXPECT_EQ(session.deviceId, "359586015829802");
  DecodeResult heartbeat = decodeOne(*codec, session, "359586015829802;");
  EXPECT_EQ(heartbeat.response, "ON");
  EXPECT_TRUE(heartbeat.positions.empty());
  DecodeResult sos = decodeOne(
      *codec, session,
      "imei:359586015829802,help me,0809231429,13554900601,F,062947.294,A,2234.4026,N,11354.3277,"
      "E,0.00,;");
  EXPECT_EQ(sos.response, "**,imei:359586015829802,E;");
  ASSERT_EQ(sos.positions.size(), 1u);
  EXPECT_EQ(std::get<std::string>(*sos.positions[0].get("alarm")), "sos");

  DecodeResult full = decodeOne(
      *codec, session,
      "imei:353451044508750,001,0809231929,13554900601,F,055403.000,A,2233.1870,N,11354.3067,E,"
      "0.00,30.1,65.43,1,0,10.5%,0.0%,28;");
  ASSERT_EQ(full.positions.size(), 1u);
  const Position& p = full.positions[0];
  EXPECT_EQ(std::get<std::string>(*p.get("event")), "001");
  EXPECT_DOUBLE_EQ(*p.altitude, 65.43);
  EXPECT_EQ(std::get<bool>(*p.get("ignition")), true);
  EXPECT_EQ(std::get<bool>(*p.get("door")), false);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("fuel1")), 10.5);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("fuel2")), 0.0);
  EXPECT_EQ(std::get<std::int64_t>(*p.get("temp1")), 28);

  DecodeResult rfid = decodeOne(
      *codec, session,
      "imei:868683020235846,rfid,160202091347,49121185,F,011344.000,A,0447.7273,N,07538.9934,W,"
      "0.00,0,,0,0,0.00%,,;");
  ASSERT_EQ(rfid.positions.size(), 1u);
  EXPECT_EQ(std::get<std::string>(*rfid.positions[0].get("driverUniqueId")), "49121185");

  DecodeResult alt = decodeOne(
      *codec, session,
      "imei:861359038609986,Equipo 1,---,------,----,214734,241018,26,1,-33.42317,-70.61930,067,"
      "229,0674,1.00,08,0,1,---,*");
  ASSERT_EQ(alt.positions.size(), 1u);
  const Position& a = alt.positions[0];
  EXPECT_EQ(a.deviceTimeUs, *civilToMicros(2018, 10, 24, 21, 47, 34));
  EXPECT_DOUBLE_EQ(a.latitude, -33.42317);
  EXPECT_DOUBLE_EQ(a.longitude, -70.61930);
  EXPECT_DOUBLE_EQ(a.speedKmh, 67);  // this format reports km/h
  EXPECT_EQ(*a.satellites, 8);
  EXPECT_DOUBLE_EQ(*a.hdop, 1.0);
  EXPECT_EQ(std::get<bool>(*a.get("charge")), true);
  EXPECT_EQ(a.get("event"), nullptr);
}

TEST(Gps103Known, RejectedDevicesAndBrokenSentences) {
  auto codec = createGps103Codec();
  SessionState session;
  session.accept = [](const std::string& id) { return id == "359586015829802"; };
  DecodeResult rejected = decodeOne(
      *codec, session,
      "imei:111111111111111,tracker,1308282156,0,F,215630.000,A,5602.11015,N,9246.30767,E,1.4,,;");
  EXPECT_TRUE(rejected.positions.empty());
  EXPECT_FALSE(session.identified());
  for (std::string bad :
       {"imei:;", "imei:abc,tracker;", "imei:359586015829802,tracker,,,F,;",
        "imei:359586015829802,tracker,,,F,1,A,9999.0,N,1.0,E;", "imei:359586015829802,OBD,1;",
        "imei:359586015829802,x,*", "imei:359586015829802,x,1,2,3,4,5,6,7,8,9,10,11,12,13;"}) {
    DecodeResult r = codec->decode(bad, session, kNow);
    EXPECT_TRUE(r.positions.empty()) << bad;
  }
}

TEST(Gps103Commands, Encoding) {
  auto codec = createGps103Codec();
  SessionState session;
  Command stop{CommandType::kEngineStop, "", 1};
  EXPECT_FALSE(codec->encodeCommand(stop, session).has_value());  // no device yet
  session.deviceId = "359586015829802";
  EXPECT_EQ(*codec->encodeCommand(stop, session), "**,imei:359586015829802,J;");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kEngineResume, "", 1}, session),
            "**,imei:359586015829802,K;");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kPositionSingle, "", 1}, session),
            "**,imei:359586015829802,B;");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kCustom, "C,30s", 1}, session),
            "**,imei:359586015829802,C,30s;");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kCustom, "G;", 1}, session),
            "**,imei:359586015829802,G;");
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustom, "A;B", 1}, session).has_value());
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustom, "", 1}, session).has_value());
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustomHex, "4142", 1}, session).has_value());
}

}  // namespace
}  // namespace tern::codec::trackers
