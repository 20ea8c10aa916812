// Meitrack: the reference corpus, stream splitting, frames with known values, commands.
#include "codec/trackers/meitrack/meitrack.h"

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

// The one reference frame that is cut short: a D00 photo packet whose length field announces
// 1086 bytes of which Traccar's test keeps 1024. A stream splitter must wait for the rest.
constexpr std::string_view kTruncatedFrame = "meitrack-020";

bool endsWithCrLf(std::string_view s) {
  return s.size() >= 2 && s.substr(s.size() - 2) == "\r\n";
}

// As on the wire: 31 test frames lack the CR LF that the length field counts (the corpus notes).
std::string wireFrame(const test::CorpusFrame& frame) {
  return endsWithCrLf(frame.bytes) ? frame.bytes : frame.bytes + "\r\n";
}

std::string checksum(std::string_view bytes) {
  unsigned sum = 0;
  for (char c : bytes) sum += static_cast<unsigned char>(c);
  char out[3];
  std::snprintf(out, sizeof out, "%02X", sum & 0xFF);
  return out;
}

// "<start><flag><len>,<imei>,<body>*XX\r\n" (test-only framing, written from the notes).
std::string frameOf(std::string_view start, char flag, std::string_view imei,
                    std::string_view body) {
  std::size_t length = 1 + imei.size() + 1 + body.size() + 5;
  std::string out = std::string(start) + flag + std::to_string(length) + "," + std::string(imei) +
                    "," + std::string(body) + "*";
  out += checksum(out);
  return out + "\r\n";
}

TEST(MeitrackCorpus, EveryFrameDecodesAsExpected) {
  auto frames = test::loadCorpus("meitrack");
  ASSERT_EQ(frames.size(), 51u);
  std::map<std::string, std::vector<const test::CorpusFrame*>> groups;
  for (const auto& frame : frames) groups[frame.testMethod].push_back(&frame);
  int checked = 0;
  for (const auto& [method, group] : groups) {
    auto codec = createMeitrackCodec();
    SessionState session;
    for (const test::CorpusFrame* frame : group) {
      if (frame->disabled) continue;
      std::string wire = wireFrame(*frame);
      FrameResult split = codec->splitFrame(wire);
      std::string_view toDecode = wire;
      if (frame->id == kTruncatedFrame) {
        EXPECT_EQ(split.status, FrameStatus::kNeedMore) << frame->id;
        toDecode = frame->bytes;  // decode what Traccar decodes
      } else {
        EXPECT_EQ(split.status, FrameStatus::kOk) << frame->id;
        EXPECT_EQ(split.size, wire.size()) << frame->id;
      }
      DecodeResult result = codec->decode(toDecode, session, kNow);
      EXPECT_EQ(test::checkExpectations(*frame, result), "") << frame->id;
      EXPECT_EQ(test::checkResponse(*frame, result), "") << frame->id;
      for (const auto& p : result.positions) {
        EXPECT_EQ(p.protocol, "meitrack") << frame->id;
        EXPECT_FALSE(p.deviceId.empty()) << frame->id;
      }
      // The frame as Traccar's test has it (without CR LF) decodes the same way.
      DecodeResult raw = codec->decode(frame->bytes, session, kNow);
      EXPECT_EQ(raw.positions.size(), result.positions.size()) << frame->id;
      EXPECT_EQ(raw.response, result.response) << frame->id;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 51);
}

TEST(MeitrackCorpus, SplitCases) {
  auto cases = test::loadSplitCases("meitrack");
  ASSERT_EQ(cases.size(), 1u);
  for (const auto& c : cases) {
    auto codec = createMeitrackCodec();
    FrameResult r = codec->splitFrame(c.input);
    if (!c.expectedFrame) {
      EXPECT_EQ(r.status, FrameStatus::kNeedMore) << c.source;
      continue;
    }
    ASSERT_EQ(r.status, FrameStatus::kOk) << c.source;
    EXPECT_EQ(c.input.substr(0, r.size), *c.expectedFrame) << c.source;
  }
}

// The corpus as a device would send it. The truncated photo packet is left out where a test
// needs each frame back the moment it is complete: it only ends when the next frame begins.
std::vector<std::string> streamFrames(bool withTruncated = false) {
  std::vector<std::string> out;
  for (const auto& frame : test::loadCorpus("meitrack")) {
    if (frame.id == kTruncatedFrame) {
      if (withTruncated) out.push_back(frame.bytes);
      continue;
    }
    out.push_back(wireFrame(frame));
  }
  return out;
}

TEST(MeitrackSplit, ByteAtATime) {
  // Four frames carry a length field that disagrees with their text (off by one or two); the
  // splitter ends them at their "*XX\r\n" instead, so they come out whole as well.
  auto frames = streamFrames();
  std::string stream;
  for (const auto& f : frames) stream += f;
  auto codec = createMeitrackCodec();
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

std::vector<std::string> splitAll(std::string buffer, std::size_t* skipped = nullptr) {
  auto codec = createMeitrackCodec();
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

std::string sameFrames(const std::vector<std::string>& got, const std::vector<std::string>& want) {
  if (got.size() != want.size()) return "count " + std::to_string(got.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) return "frame " + std::to_string(i) + ": " + toHex(got[i]);
  }
  return "";
}

TEST(MeitrackSplit, CoalescedAndWithGarbage) {
  auto all = streamFrames(true);
  std::string stream;
  for (const auto& f : all) stream += f;
  EXPECT_EQ(sameFrames(splitAll(stream), all), "");
  // Garbage after the truncated photo packet would count as its data, so it is left out here.
  auto frames = streamFrames();
  std::string noisy("\x00\xff\r\nnoise $ $x $$ $$Q,", 21);
  for (const auto& f : frames) noisy += f + std::string("\r\n\x01\x80zz$", 8);
  std::size_t skipped = 0;
  EXPECT_EQ(sameFrames(splitAll(noisy, &skipped), frames), "");
  EXPECT_GT(skipped, 0u);
}

TEST(MeitrackSplit, TruncatedBinaryFrameEndsWhereTheNextBegins) {
  std::string truncated;
  std::string next;
  for (const auto& frame : test::loadCorpus("meitrack")) {
    if (frame.id == kTruncatedFrame) truncated = frame.bytes;
    if (frame.id == "meitrack-021") next = wireFrame(frame);
  }
  ASSERT_FALSE(truncated.empty());
  auto codec = createMeitrackCodec();
  EXPECT_EQ(codec->splitFrame(truncated).status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame(truncated + next.substr(0, 10)).status, FrameStatus::kNeedMore);
  auto out = splitAll(truncated + next);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], truncated);
  EXPECT_EQ(out[1], next);
}

TEST(MeitrackSplit, RawCorpusBytesBackToBack) {
  // Traccar's frames exactly as in its tests (31 without CR LF, one truncated), sent back to back:
  // every frame is found; only the last one, lacking CR LF, waits for more bytes.
  std::vector<std::string> raw;
  std::string stream;
  for (const auto& frame : test::loadCorpus("meitrack")) {
    raw.push_back(frame.bytes);
    stream += frame.bytes;
  }
  auto out = splitAll(stream);
  ASSERT_EQ(out.size(), raw.size() - 1);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], raw[i]) << i;
  EXPECT_EQ(splitAll(stream + "\r\n").back(), raw.back() + "\r\n");
}

TEST(MeitrackSplit, FramesWithoutCrLfBackToBack) {
  // Text frames from a device that drops CR LF: each ends where the next "$$" begins.
  std::string a = "$$D28,353358017784062,D03,OK*F3";
  std::string b = "$$z27,861451040910625,AAC,1*D3";
  auto out = splitAll(a + b + "\r\n");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], a);
  EXPECT_EQ(out[1], b + "\r\n");
}

TEST(MeitrackSplit, HeaderChecksAndLimits) {
  auto codec = createMeitrackCodec();
  EXPECT_EQ(codec->splitFrame("").status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame("$").status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame("$$A12").status, FrameStatus::kNeedMore);
  FrameResult skip = codec->splitFrame("xy$$A");
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 2u);
  EXPECT_EQ(codec->splitFrame("$$A1x,").status, FrameStatus::kSkip);
  EXPECT_EQ(codec->splitFrame("$$A123456,").status, FrameStatus::kSkip);
  EXPECT_EQ(codec->splitFrame("$$A2,").status, FrameStatus::kSkip);  // shorter than any frame
  EXPECT_EQ(codec->splitFrame("$$A70000,").status, FrameStatus::kTooLarge);
  // A binary frame (CCE) waits for its full length.
  std::string cce = "$$A32,353358017784062,CCE,";
  cce += std::string("\x00\x00\x00\x00\x00\x00", 6);
  EXPECT_EQ(codec->splitFrame(cce).status, FrameStatus::kNeedMore);
  cce += "*00\r\n";
  FrameResult whole = codec->splitFrame(cce);
  EXPECT_EQ(whole.status, FrameStatus::kOk);
  EXPECT_EQ(whole.size, cce.size());
}

// ---- Own frames with known values -------------------------------------------------------

struct KnownFix {
  int event = 35;
  double latitude = 0, longitude = 0;
  int year = 2024, month = 2, day = 29, hour = 23, minute = 59, second = 58;
  double speedKmh = 0;
  int course = 0;
  int altitude = 0;
};

std::int64_t micros(const KnownFix& f) {
  return *civilToMicros(f.year, f.month, f.day, f.hour, f.minute, f.second);
}

std::string encodeAaa(const KnownFix& f, std::string_view imei) {
  char body[256];
  std::snprintf(body, sizeof body,
                "AAA,%d,%.6f,%.6f,%02d%02d%02d%02d%02d%02d,A,9,20,%.0f,%d,1.2,%d,1697,3605,"
                "639|2|FB2|2F3,0402,0001|0002|0003|019A|0573,,,3,0A32,012134",
                f.event, f.latitude, f.longitude, f.year % 100, f.month, f.day, f.hour, f.minute,
                f.second, f.speedKmh, f.course, f.altitude);
  return frameOf("$$", 'Q', imei, body);
}

void putLe(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

std::uint32_t since2000(const KnownFix& f) {
  return static_cast<std::uint32_t>(micros(f) / 1'000'000 - 946'684'800);
}

std::string cccRecord(const KnownFix& f) {
  std::string r;
  putLe(r, static_cast<std::uint8_t>(f.event), 1);
  putLe(r, static_cast<std::uint32_t>(static_cast<std::int32_t>(std::lround(f.latitude * 1e6))), 4);
  putLe(r, static_cast<std::uint32_t>(static_cast<std::int32_t>(std::lround(f.longitude * 1e6))),
        4);
  putLe(r, since2000(f), 4);
  putLe(r, 1, 1);   // valid
  putLe(r, 7, 1);   // satellites
  putLe(r, 21, 1);  // gsm
  putLe(r, static_cast<std::uint16_t>(f.speedKmh), 2);
  putLe(r, static_cast<std::uint16_t>(f.course), 2);
  putLe(r, 13, 2);  // hdop x10
  putLe(r, static_cast<std::uint16_t>(f.altitude), 2);
  putLe(r, 178157, 4);  // odometer
  putLe(r, 93641, 4);   // runtime
  putLe(r, 0, 8);       // cell
  putLe(r, 2, 2);       // status
  putLe(r, 3, 2);       // adc1
  putLe(r, 417, 2);     // battery /100
  putLe(r, 1218, 2);    // power
  putLe(r, 0, 4);       // geofence
  EXPECT_EQ(r.size(), 0x34u);
  return r;
}

std::string encodeCcc(const std::vector<KnownFix>& fixes, std::string_view imei) {
  std::string body = "CCC,";
  putLe(body, 0x0102, 2);
  putLe(body, 0x34, 2);
  putLe(body, fixes.size(), 4);
  for (const auto& f : fixes) body += cccRecord(f);
  return frameOf("$$", 'X', imei, body);
}

std::string encodeCce(const std::vector<KnownFix>& fixes, std::string_view imei) {
  std::string body = "CCE,";
  putLe(body, 0, 4);
  putLe(body, fixes.size(), 2);
  for (std::size_t i = 0; i < fixes.size(); ++i) {
    const KnownFix& f = fixes[i];
    std::string rec;
    putLe(rec, i, 2);  // index
    rec += std::string("\x03\x01", 2);
    putLe(rec, static_cast<std::uint8_t>(f.event), 1);
    rec += std::string("\x05\x01\xFE\x69\x4D", 5);  // valid, batteryLevel 77
    rec += "\x04";
    rec += "\x08";
    putLe(rec, static_cast<std::uint16_t>(f.speedKmh), 2);
    rec += "\x09";
    putLe(rec, static_cast<std::uint16_t>(f.course), 2);
    rec += "\x0B";
    putLe(rec, static_cast<std::uint16_t>(static_cast<std::int16_t>(f.altitude)), 2);
    rec += "\x99";
    putLe(rec, 2244, 2);  // rpm
    rec += "\x04";
    rec += "\x02";
    putLe(rec, static_cast<std::uint32_t>(static_cast<std::int32_t>(std::lround(f.latitude * 1e6))),
          4);
    rec += "\x03";
    putLe(rec,
          static_cast<std::uint32_t>(static_cast<std::int32_t>(std::lround(f.longitude * 1e6))), 4);
    rec += "\x04";
    putLe(rec, since2000(f), 4);
    rec += std::string("\xFE\xF4", 2);
    putLe(rec, 644515, 4);  // engine minutes
    rec += "\x01";          // one variable-length value: temperature sensor 1
    rec += std::string("\x2B\x03\x01", 3);
    putLe(rec, static_cast<std::uint16_t>(static_cast<std::int16_t>(-1234)), 2);
    putLe(body, rec.size(), 2);
    body += rec;
  }
  return frameOf("$$", 'A', imei, body);
}

std::vector<KnownFix> knownFixes() {
  KnownFix sw;
  sw.latitude = -33.868765;
  sw.longitude = -151.20929;
  sw.speedKmh = 87;
  sw.course = 271;
  sw.altitude = -12;
  sw.event = 1;
  KnownFix ne;
  ne.latitude = 60.338300;
  ne.longitude = 25.103233;
  ne.speedKmh = 0;
  ne.course = 360;
  ne.altitude = 1621;
  ne.year = 2031;
  ne.month = 12;
  ne.day = 31;
  ne.hour = 0;
  ne.minute = 0;
  ne.second = 1;
  return {sw, ne};
}

constexpr std::string_view kImei = "353358017784062";

TEST(MeitrackKnown, TextPositions) {
  for (const KnownFix& f : knownFixes()) {
    auto codec = createMeitrackCodec();
    SessionState session;
    std::string wire = encodeAaa(f, kImei);
    FrameResult split = codec->splitFrame(wire);
    ASSERT_EQ(split.status, FrameStatus::kOk);
    ASSERT_EQ(split.size, wire.size());
    DecodeResult r = codec->decode(wire, session, kNow);
    EXPECT_FALSE(r.badChecksum);
    EXPECT_FALSE(r.badLength);
    EXPECT_EQ(r.response, "");  // AAA is not acknowledged
    ASSERT_EQ(r.positions.size(), 1u) << wire;
    const Position& p = r.positions[0];
    EXPECT_EQ(session.deviceId, kImei);
    EXPECT_EQ(p.deviceId, kImei);
    EXPECT_EQ(p.deviceTimeUs, micros(f));
    EXPECT_NEAR(p.latitude, f.latitude, 1e-9);
    EXPECT_NEAR(p.longitude, f.longitude, 1e-9);
    EXPECT_DOUBLE_EQ(p.speedKmh, f.speedKmh);
    EXPECT_DOUBLE_EQ(*p.course, f.course);
    EXPECT_DOUBLE_EQ(*p.altitude, f.altitude);
    EXPECT_TRUE(p.valid);
    EXPECT_EQ(*p.satellites, 9);
    EXPECT_DOUBLE_EQ(*p.hdop, 1.2);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("event")), f.event);
    if (f.event == 1) {
      EXPECT_EQ(std::get<std::string>(*p.get("alarm")), "sos");
    }
    EXPECT_EQ(std::get<std::int64_t>(*p.get("odometer")), 1697);
    EXPECT_EQ(std::get<std::string>(*p.get("runtime")), "3605");
    EXPECT_EQ(std::get<std::int64_t>(*p.get("input")), 4);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("output")), 2);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("adc3")), 3);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("battery")), 4.10);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("power")), 13.95);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("fuelLevel")), 10.5);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("temp1")), 85.0);
  }
}

TEST(MeitrackKnown, ModelSpecificVoltages) {
  auto codec = createMeitrackCodec();
  SessionState session;
  session.setExtra("model", "mvt380");
  DecodeResult r = codec->decode(encodeAaa(knownFixes()[0], kImei), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_DOUBLE_EQ(std::get<double>(*r.positions[0].get("battery")), 0x19A * 3.0 * 2.0 / 1024.0);
  EXPECT_DOUBLE_EQ(std::get<double>(*r.positions[0].get("power")), 0x573 * 3.0 * 16.0 / 1024.0);
}

TEST(MeitrackKnown, BinaryCccRecordsAndAcknowledgement) {
  auto fixes = knownFixes();
  auto codec = createMeitrackCodec();
  SessionState session;
  std::string wire = encodeCcc(fixes, kImei);
  FrameResult split = codec->splitFrame(wire);
  ASSERT_EQ(split.status, FrameStatus::kOk);
  ASSERT_EQ(split.size, wire.size());
  DecodeResult r = codec->decode(wire, session, kNow);
  EXPECT_FALSE(r.badChecksum);
  EXPECT_FALSE(r.badLength);
  ASSERT_EQ(r.positions.size(), fixes.size());
  for (std::size_t i = 0; i < fixes.size(); ++i) {
    const Position& p = r.positions[i];
    EXPECT_EQ(p.deviceTimeUs, micros(fixes[i]));
    EXPECT_NEAR(p.latitude, fixes[i].latitude, 1e-9);
    EXPECT_NEAR(p.longitude, fixes[i].longitude, 1e-9);
    EXPECT_DOUBLE_EQ(p.speedKmh, fixes[i].speedKmh);
    EXPECT_DOUBLE_EQ(*p.course, fixes[i].course);
    EXPECT_TRUE(p.valid);
    EXPECT_EQ(*p.satellites, 7);
    EXPECT_NEAR(*p.hdop, 1.3, 1e-12);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("battery")), 4.17);
  }
  EXPECT_EQ(r.response, frameOf("@@", 'X', kImei, "CCC,2"));
  EXPECT_EQ(r.response,
            "@@X27,353358017784062,CCC,2*" + checksum("@@X27,353358017784062,CCC,2*") + "\r\n");
  // Eleven records: the count gets two digits and the length one more.
  std::vector<KnownFix> many(11, fixes[1]);
  DecodeResult r11 = codec->decode(encodeCcc(many, kImei), session, kNow);
  EXPECT_EQ(r11.positions.size(), 11u);
  EXPECT_EQ(r11.response, frameOf("@@", 'X', kImei, "CCC,11"));
  EXPECT_EQ(r11.response.substr(0, 6), "@@X28,");
}

TEST(MeitrackKnown, BinaryCceRecords) {
  auto fixes = knownFixes();
  auto codec = createMeitrackCodec();
  SessionState session;
  std::string wire = encodeCce(fixes, kImei);
  FrameResult split = codec->splitFrame(wire);
  ASSERT_EQ(split.status, FrameStatus::kOk);
  ASSERT_EQ(split.size, wire.size());
  DecodeResult r = codec->decode(wire, session, kNow);
  EXPECT_FALSE(r.badChecksum);
  EXPECT_FALSE(r.badLength);
  EXPECT_EQ(r.response, "");  // CCE is not acknowledged
  ASSERT_EQ(r.positions.size(), fixes.size());
  for (std::size_t i = 0; i < fixes.size(); ++i) {
    const Position& p = r.positions[i];
    EXPECT_TRUE(p.hasLocation);
    EXPECT_TRUE(p.valid);
    EXPECT_EQ(p.deviceTimeUs, micros(fixes[i]));
    EXPECT_NEAR(p.latitude, fixes[i].latitude, 1e-9);
    EXPECT_NEAR(p.longitude, fixes[i].longitude, 1e-9);
    EXPECT_DOUBLE_EQ(p.speedKmh, fixes[i].speedKmh);
    EXPECT_DOUBLE_EQ(*p.course, fixes[i].course);
    EXPECT_DOUBLE_EQ(*p.altitude, fixes[i].altitude);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("index")), static_cast<std::int64_t>(i));
    EXPECT_EQ(std::get<std::int64_t>(*p.get("event")), fixes[i].event);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("batteryLevel")), 77);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("rpm")), 2244);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("hours")), 644515LL * 60000);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("temp1")), -12.34);
  }
}

TEST(MeitrackKnown, ChecksumAndLengthMismatchesAreFlaggedNotFatal) {
  auto codec = createMeitrackCodec();
  SessionState session;
  std::string wire = encodeAaa(knownFixes()[0], kImei);
  std::string badSum = wire;
  badSum[badSum.size() - 3] = badSum[badSum.size() - 3] == '0' ? '1' : '0';
  DecodeResult r = codec->decode(badSum, session, kNow);
  EXPECT_TRUE(r.badChecksum);
  EXPECT_FALSE(r.badLength);
  EXPECT_EQ(r.positions.size(), 1u);
  std::string badLength = wire;
  badLength.replace(3, 3, "999");
  DecodeResult l = codec->decode(badLength, session, kNow);
  EXPECT_TRUE(l.badLength);
  EXPECT_EQ(l.positions.size(), 1u);
}

TEST(MeitrackKnown, SessionAndBrokenFrames) {
  auto codec = createMeitrackCodec();
  SessionState session;
  session.accept = [](const std::string&) { return false; };
  DecodeResult rejected = codec->decode(encodeCcc(knownFixes(), kImei), session, kNow);
  EXPECT_TRUE(rejected.positions.empty());
  EXPECT_EQ(rejected.response, "");  // records stay on the device
  DecodeResult aac = codec->decode("$$z27,861451040910625,AAC,1*D3\r\n", session, kNow);
  EXPECT_EQ(aac.response, "@@z27,861451040910625,AAC,1*0B\r\n");
  session.accept = nullptr;
  for (std::string bad :
       {std::string("$$"), std::string("$$A"), std::string("$$A1,"), std::string("$$A10,123"),
        std::string("$$A10,12a,AAA,1*00"), std::string("$$A10,123,A*00"),
        std::string("$$A10,123,AAA,1,2,3*00"),
        std::string("$$A10,123,AAA,35,95.0,10.0,240101000000,A*00"),
        std::string("$$A10,123,CCC,\x01\x02*00", 19), std::string("$$A10,123,CCE,\xff\xff*00", 19),
        std::string("$$A10,123,CCE,\x00\x00\x00\x00\x05\x00\x20\x00\x00*00", 26)}) {
    DecodeResult r = codec->decode(bad, session, kNow);
    for (const auto& p : r.positions) {
      if (p.hasLocation) {
        EXPECT_LE(std::fabs(p.latitude), 90.0);
        EXPECT_LE(std::fabs(p.longitude), 180.0);
      }
    }
    EXPECT_TRUE(r.positions.empty() || bad.find("CC") != std::string::npos) << bad;
  }
}

TEST(MeitrackCommands, Encoding) {
  auto codec = createMeitrackCodec();
  SessionState session;
  EXPECT_FALSE(codec->encodeCommand({CommandType::kEngineStop, "", 1}, session).has_value());
  session.deviceId = std::string(kImei);
  EXPECT_EQ(*codec->encodeCommand({CommandType::kEngineStop, "", 1}, session),
            "@@M33,353358017784062,C01,0,12222*E8\r\n");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kEngineResume, "", 1}, session),
            "@@M33,353358017784062,C01,0,02222*E7\r\n");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kPositionSingle, "", 1}, session),
            "@@Q25,353358017784062,A10*6A\r\n");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kCustom, "A11,30", 1}, session),
            "@@Q28,353358017784062,A11,30*FD\r\n");
  EXPECT_EQ(*codec->encodeCommand({CommandType::kCustom, "C01,0,22122", 1}, session),
            frameOf("@@", 'Q', kImei, "C01,0,22122"));
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustom, "A1*", 1}, session).has_value());
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustom, "", 1}, session).has_value());
  EXPECT_FALSE(codec->encodeCommand({CommandType::kCustomHex, "41", 1}, session).has_value());
  // A short device id: the length field follows the content (two digits at least).
  session.deviceId = "12345";
  EXPECT_EQ(*codec->encodeCommand({CommandType::kPositionSingle, "", 1}, session),
            frameOf("@@", 'Q', "12345", "A10"));
}

TEST(MeitrackCommands, DeviceAnswers) {
  auto codec = createMeitrackCodec();
  SessionState session;
  // Output control answered with OK: a command answer, no position.
  std::string ok = frameOf("$$", 'M', kImei, "C01,OK");
  FrameResult split = codec->splitFrame(ok);
  ASSERT_EQ(split.status, FrameStatus::kOk);
  DecodeResult r = codec->decode(ok, session, kNow);
  ASSERT_TRUE(r.commandAnswer.has_value());
  EXPECT_EQ(r.commandAnswer->text, "C01,OK");
  EXPECT_TRUE(r.positions.empty());
  EXPECT_FALSE(r.badChecksum);
  // A10 (one position) is answered with a position report.
  std::string a10 = encodeAaa(knownFixes()[1], kImei);
  a10 = frameOf("$$", 'Q', kImei,
                "A10" + a10.substr(a10.find(",AAA,") + 4, a10.find('*') - a10.find(",AAA,") - 4));
  DecodeResult p = codec->decode(a10, session, kNow);
  ASSERT_EQ(p.positions.size(), 1u) << a10;
  EXPECT_NEAR(p.positions[0].latitude, knownFixes()[1].latitude, 1e-9);
  // D82 results become a position with the "result" attribute, as in Traccar.
  DecodeResult d82 = codec->decode(frameOf("$$", 'u', kImei, "D82,0"), session, kNow);
  ASSERT_TRUE(d82.commandAnswer.has_value());
  EXPECT_EQ(d82.commandAnswer->text, "D82,0");
  ASSERT_EQ(d82.positions.size(), 1u);
  EXPECT_FALSE(d82.positions[0].hasLocation);
  EXPECT_EQ(std::get<std::string>(*d82.positions[0].get("result")), "D82,0");
}

}  // namespace
}  // namespace tern::codec::trackers
